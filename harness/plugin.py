"""pytest hooks and options of the harness; the logic lives in the modules they call.

The plugin is inert unless the run needs a model: ``--model`` (or HARNESS_MODEL) is given, or
the run collects the shipped suites. Then, at session start, it resolves the model source
(one-line error if it is bad), prints what reproduces the run, and builds the model once (cached).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from harness import builtins, hookspecs
from harness.errors import HarnessError, one_line
from harness.locations import suites_dir
from harness.profiles import Profile
from harness.properties import (
    ANSWER_TEXT_LIMIT,
    INCONCLUSIVE,
    OUTCOME_PROPERTY,
    UNSTABLE,
    SoftVerdict,
    answer_property,
    finding_kind,
    finding_property,
    soft_section,
    soft_verdict,
)
from harness.settings import PATH_METAVARS, SETTINGS, HarnessConfig, check_execution_provider, resolve
from harness.terminal import progress_writer
from harness.text import clip, clip_middle

# Everything else loads when a run engages the harness: importing this entry point (every pytest run of
# the environment loads it) must stay cheap; benchmarks/plugin_import.py measures it.
if TYPE_CHECKING:
    from harness.budget import BudgetClock
    from harness.build.pipeline import PreparedModel
    from harness.capacity.plan import MemoryPlan
    from harness.checks.ab import ABModels
    from harness.checks.cases import CaseSet
    from harness.checks.parity import ParityReport, ReferenceData
    from harness.checks.reference import EvalSet, EvalText
    from harness.checks.stability import ComputePaths, PathVerdict
    from harness.checks.yardstick import Yardstick
    from harness.deploy.folder import Deployment
    from harness.gates import Gates
    from harness.hookspecs import BuilderFactory
    from harness.robustness.prober import Prober
    from harness.runtime.factory import RuntimeFactory
    from harness.runtime.protocol import Generation, Prompt, Runtime
    from harness.session import HarnessSession

CONFIG_KEY = pytest.StashKey[HarnessConfig]()
CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
PATH_FLAGS = {s.flag for s in SETTINGS if s.metavar in PATH_METAVARS}
SESSION_KEY = pytest.StashKey["HarnessSession"]()
GATES_KEY = pytest.StashKey["Gates"]()
CASES_KEY = pytest.StashKey["CaseSet"]()
EVAL_TEXTS_KEY = pytest.StashKey[tuple["EvalText", ...]]()  # --eval-texts, read at start
PROFILES_KEY = pytest.StashKey[dict[str, Profile]]()
FACTORY_KEY = pytest.StashKey[tuple["RuntimeFactory", str] | None]()  # the plugged-in runtime and its reference
# A bad input is always a HarnessError (one line, exit 4); anything else is a bug in the harness.
INTERNAL_ERROR = "harness: internal error: a bug in the harness, not in your input; please report it with the traceback"
FIRST_SEEN_KEY = pytest.StashKey[dict[str, str]]()  # each HarnessError line -> the check that reported it first
CHAT_MARKER = "harness_chat"
CASES_MARKER = "harness_cases"
NO_TWIN_FINDING = "no-fp32-twin"
NO_CHAT_TEMPLATE = ("the model has no chat template (a base model): its chat checks are skipped, its raw-prompt "
                    "checks run")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)
    pluginmanager.register(builtins, "harness-builtins")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "small language model validation (onnx-slm-harness)")
    for setting in SETTINGS:
        group.addoption(setting.flag, dest=f"harness_{setting.name}", metavar=setting.metavar,
                        default=None, action="append" if setting.multiple else "store",
                        help=f"{setting.help} [env {setting.env}]")
        if setting.multiple:
            parser.addini(setting.ini, help=setting.help, type="linelist", default=[])
        else:
            parser.addini(setting.ini, help=setting.help, default=None)
    group.addoption("--gate", dest="harness_gates", metavar="NAME=VALUE", action="append", default=[],
                    help="set a gate's limit for this run (repeatable); see the README for the list "
                         "[also [tool.harness.gates] and ini harness_gates]")
    parser.addini("harness_gates", help="gate limits, one NAME=VALUE per line", type="linelist", default=[])


def _model_requested(args: list[str]) -> bool:
    return os.environ.get("HARNESS_MODEL") is not None or any(
        arg == "--model" or arg.startswith("--model=") for arg in args
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``pytest --model PATH`` from any folder runs the shipped suites when no tests are named."""
    if _model_requested(args) and not early_config.known_args_namespace.file_or_dir:
        args.append(str(suites_dir()))
    _warn_if_rootdir_moved(early_config, args)


def _warn_if_rootdir_moved(early_config: pytest.Config, args: list[str]) -> None:
    """pytest picks the rootdir before plugins load, so ``--model PATH`` (two words) counts PATH as
    a test path; a model outside the current folder then makes pytest miss the folder's config.
    """
    invocation = early_config.invocation_params.dir
    nearest = next((folder / name for folder in (invocation, *invocation.parents)
                    for name in CONFIG_FILES if (folder / name).is_file()), None)
    if nearest is None or early_config.inipath == nearest:
        return
    for flag, value in itertools.pairwise(args):
        if flag in PATH_FLAGS and Path(value).exists():
            message = (f"harness: pytest read {flag}'s value as a test path and skipped {nearest}; "
                       f"write {flag}={value} to keep that configuration")
            early_config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)
            return


def _engaged(config: pytest.Config, harness_config: HarnessConfig) -> bool:
    if harness_config.model_given:
        return True
    suites = suites_dir().resolve()
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == suites or suites in path.parents or path in suites.parents:
            return True
    return False


def _pyproject(config: pytest.Config) -> Path | None:
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    candidate = config.rootpath / "pyproject.toml"
    return candidate if candidate.is_file() else None


def _registered_profiles(config: pytest.Config) -> dict[str, Profile]:
    """The profiles the plugins contribute; of two with one name, the first (a conftest's) wins."""
    profiles: dict[str, Profile] = {}
    for contribution in config.hook.pytest_harness_profiles(config=config):
        for profile in contribution:
            profiles.setdefault(profile.name, profile)
    return profiles


def _registered_builders(config: pytest.Config) -> dict[str, BuilderFactory]:
    """The builders the plugins contribute; of two with one name, the first (a conftest's) wins."""
    builders: dict[str, BuilderFactory] = {}
    for contribution in config.hook.pytest_harness_builders(config=config):
        for name, factory in contribution.items():
            builders.setdefault(name, factory)
    return builders


def _gates(config: pytest.Config, harness_config: HarnessConfig, pyproject: Path | None, ini_origin: str) -> Gates:
    from harness.gates import declare, resolve_gates

    return resolve_gates(
        declare(config.hook.pytest_harness_gates(config=config)), config.getoption("harness_gates"),
        table=harness_config.gate_table, table_origin=f"[tool.harness.gates] in {pyproject}",
        ini_lines=config.getini("harness_gates"), ini_origin=f"harness_gates in {ini_origin}")


def _runtime_factory(config: pytest.Config) -> tuple[RuntimeFactory, str] | None:
    """The runtime a conftest plugs in, with the reference the worker process imports it by."""
    from harness.runtime.factory import reference_of

    factory = config.hook.pytest_harness_runtime_factory(config=config)
    return None if factory is None else (factory, reference_of(factory))


@functools.cache
def _shipped_suites() -> Path:
    return suites_dir().resolve()


def _model_of_run(path: Path) -> Path | None:
    """--harness-ab's model when it names a run (its folder or results.json); None when it names a model."""
    from harness.report.runs import model_of_run

    try:
        return model_of_run(path)
    except HarnessError as exc:
        raise HarnessError(f"--harness-ab {exc}") from None


def _check_ep(ep: str) -> None:
    if ep == "cpu":
        return  # every onnxruntime build has it; skip importing onnxruntime at start-up
    import onnxruntime

    check_execution_provider(ep, onnxruntime.get_available_providers())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CHAT_MARKER}: the check needs the model's chat template (skipped, in one "
                                       "line, for a base model without one)")
    config.addinivalue_line("markers", f"{CASES_MARKER}(with_assertions=False): which cases a test that takes "
                                       "harness_case runs for")
    if config.option.help or config.option.version:
        return  # --help must work even with a bad HARNESS_* variable
    cli = {s.name: config.getoption(f"harness_{s.name}") for s in SETTINGS}
    ini = {s.name: config.getini(s.ini) for s in SETTINGS}
    ini_origin = str(config.inipath) if config.inipath else "the ini file"
    try:
        pyproject = _pyproject(config)
        profiles, builders = _registered_profiles(config), _registered_builders(config)
        harness_config = resolve(cli, env=os.environ, pyproject=pyproject, ini=ini, ini_origin=ini_origin,
                                 rootdir=config.rootpath,
                                 registered={"profile": tuple(profiles), "builder": tuple(builders)})
        config.stash[CONFIG_KEY] = harness_config
        config.stash[PROFILES_KEY] = profiles
        if not _engaged(config, harness_config):
            return
        from harness.offline import disable_telemetry

        disable_telemetry()  # before anything loads onnxruntime, onnxruntime-genai or Foundry Local: no network
        from harness.checks.cases import default_case_paths, load_cases
        from harness.report.results import RunRecorder
        from harness.session import HarnessSession

        config.stash[GATES_KEY] = _gates(config, harness_config, pyproject, ini_origin)
        _check_ep(harness_config.ep)
        config.stash[CASES_KEY] = load_cases(harness_config.cases or default_case_paths())
        if harness_config.eval_texts:
            from harness.checks.reference import load_eval_texts

            config.stash[EVAL_TEXTS_KEY] = load_eval_texts(harness_config.eval_texts)
        config.stash[FACTORY_KEY] = _runtime_factory(config)
        ab_model = None if harness_config.ab is None else _model_of_run(harness_config.ab)
        harness = HarnessSession.open(harness_config, builders[harness_config.builder](harness_config), ab_model)
        refusal = harness.plan_memory(profiles[harness_config.profile].max_prompt_tokens).refusal()
        if refusal is not None:
            raise HarnessError(refusal)
        config.stash[SESSION_KEY] = harness
        config.pluginmanager.register(RunRecorder(harness, config.stash[GATES_KEY]), "harness-results")
        _register_integrations(config, harness_config)
    except HarnessError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    except Exception as exc:
        exc.add_note(INTERNAL_ERROR)
        raise


def _register_integrations(config: pytest.Config, harness_config: HarnessConfig) -> None:
    """Glue to other plugins, only where they are installed (as pytest-randomly does)."""
    if config.pluginmanager.hasplugin("benchmark"):
        from harness.integrations.benchmark import BenchmarkIntegration

        config.pluginmanager.register(BenchmarkIntegration(harness_config.reports_dir), "harness-benchmark")
    if config.pluginmanager.hasplugin("xdist"):
        from harness.integrations.xdist import XdistIntegration

        config.pluginmanager.register(XdistIntegration(), "harness-xdist")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    return session.header_lines() if session else []


@pytest.hookimpl(trylast=True)  # after -k, -m and the other plugins' selection: a shard deals out what is left
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """This shard's checks (--harness-shard), then the shipped suites this run holds, in order (a time budget plans
    for them alone)."""
    harness_config = config.stash.get(CONFIG_KEY, None)
    if harness_config is not None and harness_config.shard is not None:
        mine = harness_config.shard.selects(item.nodeid for item in items)
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in mine])
        items[:] = [item for item in items if item.nodeid in mine]
    harness = config.stash.get(SESSION_KEY, None)
    if harness is not None:
        harness.suite_modules = tuple(dict.fromkeys(item.path.name for item in items
                                                    if item.path.parent == _shipped_suites()))


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Build the model right after the header, so a failure is one line, not one error per test."""
    harness = session.config.stash.get(SESSION_KEY, None)
    if harness is None or session.config.option.collectonly:
        return
    try:
        harness.deploy(progress_writer(session.config))
    except HarnessError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    except Exception as exc:
        exc.add_note(INTERNAL_ERROR)
        raise


@pytest.hookimpl(tryfirst=True)  # before the fixtures set up: a base model's chat fixtures would fail
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A shipped suite the memory plan cannot fit skips with its need; chat checks of a base model (no chat template)
    skip with one line, its raw-prompt checks run."""
    harness = item.config.stash.get(SESSION_KEY, None)
    if harness is None:
        return
    if harness.memory is not None and item.path.parent == _shipped_suites():
        too_big = harness.memory.skip_reason(harness.memory.suites.get(item.path.name))
        if too_big is not None:
            pytest.skip(too_big)
    if item.get_closest_marker(CHAT_MARKER) is None or harness.prepared is None:
        return
    from harness.runtime.genai import read_chat_template

    if read_chat_template(harness.prepared.path) is None:
        pytest.skip(NO_CHAT_TEMPLATE)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The one error path: a ``HarnessError`` raised by any fixture or check is its one line, not a traceback.

    A soft verdict (``SoftVerdict``: unstable, inconclusive) fails the check with --unstable=fail or
    --inconclusive=fail; with warn it is its own outcome: not failed, and never shown as a plain pass."""
    report: pytest.TestReport = yield
    if call.excinfo is None or SESSION_KEY not in item.config.stash:
        return report
    if call.excinfo.errisinstance(HarnessError):
        # One cause, said once: a session fixture that cannot set up (an unloadable reference) fails every check
        # that uses it with the same line; the later ones point back at the first.
        line = one_line(call.excinfo.value)
        first = item.config.stash.setdefault(FIRST_SEEN_KEY, {}).setdefault(line, item.nodeid)
        report.longrepr = line if first == item.nodeid else f"harness: the same error as {first} (above)"
        return report
    if not call.excinfo.errisinstance(SoftVerdict):
        return report
    verdict = call.excinfo.value
    assert isinstance(verdict, SoftVerdict)
    outcome, message = verdict.outcome, str(verdict)
    report.user_properties.append((OUTCOME_PROPERTY, outcome))
    harness_config = item.config.stash.get(CONFIG_KEY, None)
    if harness_config is not None and getattr(harness_config, outcome) == "fail":
        report.longrepr = f"{message}\n(--{outcome}=fail from {harness_config.origins[outcome]})"
    else:
        report.outcome = "passed"
        report.longrepr = None
        report.sections.append((soft_section(outcome), message))
    return report


def pytest_report_teststatus(report: pytest.TestReport,
                             config: pytest.Config) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    if report.when != "call" or not report.passed:
        return None
    verdict = soft_verdict(report)
    if verdict is None:
        return None
    return verdict[0], verdict[0][0].upper(), (verdict[0].upper(), {"yellow": True})


def reported_findings(report: pytest.TestReport) -> list[tuple[str, str]]:
    """The (kind, text) findings a check reported through ``harness_finding``."""
    return [(kind, str(text)) for name, text in report.user_properties if (kind := finding_kind(name)) is not None]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List findings (whatever the checks' outcomes) and soft verdicts, like pytest's short summary."""
    reports = [report for reports in terminalreporter.stats.values() for report in reports
               if isinstance(report, pytest.TestReport) and report.when == "call"]
    found = [(report.nodeid, kind, text) for report in reports for kind, text in reported_findings(report)]
    if found:
        terminalreporter.section("harness: findings", sep="=", yellow=True)
        for nodeid, kind, text in found:
            terminalreporter.write_line(f"FINDING {kind} {nodeid}")
            terminalreporter.write_line(f"  {text}")
    for outcome, why in SOFT_EXPLAINED.items():
        soft = [report for report in terminalreporter.stats.get(outcome, ()) if isinstance(report, pytest.TestReport)]
        if not soft:
            continue
        terminalreporter.section(f"harness: {outcome} verdicts", sep="=", yellow=True)
        terminalreporter.write_line(f"{why} (--{outcome}=fail makes them fail)")
        for report in soft:
            lines = (soft_verdict(report) or ("", ""))[1].splitlines()
            terminalreporter.write_line(f"{outcome.upper()} {report.nodeid}")
            for line in lines[:2]:
                terminalreporter.write_line(f"  {line.strip()}")


SOFT_EXPLAINED = {UNSTABLE: "their compute paths disagree: each verdict hangs on a near-tie that another CPU may "
                            "break either way",
                  INCONCLUSIVE: "the measurement cannot decide: a timing's interval straddles its limit, the rounds "
                                "are too few, or (off Linux) a memory peak's bounds straddle its gate"}


def _cases(config: pytest.Config) -> CaseSet:
    """The validated case files of this run (none when the harness is not active)."""
    from harness.checks.cases import CaseSet

    return config.stash.get(CASES_KEY, CaseSet(()))


def _eval_set(config: pytest.Config) -> EvalSet:
    """The parity suite's eval set: the shipped prompts and texts, the user's texts (--eval-texts) in place of the
    shipped ones."""
    from harness.checks.reference import load_eval_set

    texts: tuple[EvalText, ...] = config.stash.get(EVAL_TEXTS_KEY, ())
    return load_eval_set(texts=texts)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``harness_case`` runs once per case of this run (``@pytest.mark.harness_cases(
    with_assertions=True)``: once per case that has assertions). A chat case needs the chat template. A test that
    takes ``harness_eval_text`` runs once per eval text of this run (its id)."""
    if "harness_eval_text" in metafunc.fixturenames:
        metafunc.parametrize("harness_eval_text", [text.id for text in _eval_set(metafunc.config).texts])
    if "harness_case" not in metafunc.fixturenames:
        return
    cases = _cases(metafunc.config).cases
    marker = metafunc.definition.get_closest_marker(CASES_MARKER)
    if marker is not None and marker.kwargs.get("with_assertions"):
        cases = tuple(case for case in cases if case.assertions)
    chat = pytest.mark.harness_chat
    metafunc.parametrize("harness_case", [pytest.param(case, id=case.id,
                                                       marks=() if isinstance(case.prompt, str) else chat)
                                          for case in cases])


def _session(config: pytest.Config) -> HarnessSession:
    harness = config.stash.get(SESSION_KEY, None)
    if harness is None:
        pytest.skip("harness is not active in this run: pass --model PATH or run the shipped suites")
    return harness


@pytest.fixture(scope="session")
def harness_config(pytestconfig: pytest.Config) -> HarnessConfig:
    """The resolved settings of this run."""
    return pytestconfig.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def harness_cases(pytestconfig: pytest.Config) -> CaseSet:
    """The validated cases of this run (--cases, or the shipped sets)."""
    _session(pytestconfig)
    return _cases(pytestconfig)


@pytest.fixture(scope="module")
def harness_profile(request: pytest.FixtureRequest, harness_config: HarnessConfig) -> Profile:
    """Sample counts for this run's profile (smoke, full, or one a conftest adds); with --harness-budget, fitted
    again before each module to what is left of the budget (module-scoped: a count read in one module holds there)."""
    profile = request.config.stash[PROFILES_KEY][harness_config.profile]
    if harness_config.budget is None:
        return profile
    clock = _budget_clock(request)
    return clock.scaling.profile if clock.scaling is not None else profile


def _budget_clock(request: pytest.FixtureRequest) -> BudgetClock:
    """The run's budget clock, made on first use: it measures the model's pace once."""
    from harness.budget import SMOKE_SUITE_SECONDS, BudgetClock, ab_seconds, measure_pace

    harness = _session(request.config)
    if harness.clock is None:
        runtime: Runtime = request.getfixturevalue("harness_runtime")
        profile = request.config.stash[PROFILES_KEY][harness.config.profile]
        assert harness.config.budget is not None
        suites = harness.suite_modules or tuple(SMOKE_SUITE_SECONDS)  # a run of own suites alone: as a whole one
        memory = harness.memory
        if memory is not None:  # the suites the memory plan skips take no time
            suites = tuple(name for name in suites if memory.skip_reason(memory.suites.get(name)) is None)
        parity = "test_parity.py" in suites and (memory is None or memory.skip_reason(memory.reference) is None)
        cold = {"test_parity.py": harness.reference_seconds()} if parity else {}
        if "test_retention.py" in suites and harness.base_source is not None:
            cold["test_retention.py"] = harness.reference_seconds(base=True)
        pace, context = measure_pace(runtime), runtime.info.context_length
        if harness.ab_source is not None and "test_benchmarks.py" in suites:
            cold["test_benchmarks.py"] = ab_seconds(profile, context, pace)
        harness.clock = BudgetClock(harness.config.budget, harness.opened_at, pace, profile, context, suites, cold)
    return harness.clock


@pytest.fixture(scope="module", autouse=True)
def harness_module_start(request: pytest.FixtureRequest) -> None:
    """Before each module: with a budget, the module starts on the budget's clock (the previous one is timed, the
    counts fitted again to what is left, and a shipped suite says what it should take and how much of the budget is
    left); and a shipped suite whose copies the memory plan cannot fit beside the session's model runs with it
    released (it loads again when a check next uses it)."""
    harness = request.config.stash.get(SESSION_KEY, None)
    if harness is None:
        return
    progress = progress_writer(request.config)
    if harness.config.budget is not None:
        lines = _budget_clock(request).enter(request.path.name, time.monotonic())
        for line in lines:
            progress(line)
        harness.budget = [*(harness.budget or []), *lines]
        harness.write_provenance()
    from harness.runtime.protocol import ReleasableRuntime

    runtime = harness.runtime
    reason = harness.memory.release_reason(request.path.name) if harness.memory is not None else None
    if reason and request.path.parent == _shipped_suites() and isinstance(runtime, ReleasableRuntime) \
            and runtime.loaded:
        runtime.release()
        progress(f"{request.path.name}: the session's model released while it runs: {reason}")


@pytest.fixture(scope="session")
def harness_memory_plan(pytestconfig: pytest.Config, harness_model: PreparedModel) -> MemoryPlan | None:
    """The memory plan: each phase's predicted peak against what the run may use (``prompt_skip_reason(suite,
    tokens)`` says whether a prompt of that length can be prefilled); None for a run without one."""
    return _session(pytestconfig).memory


@pytest.fixture(scope="session")
def harness_model(pytestconfig: pytest.Config) -> PreparedModel:
    """The built (or prebuilt) onnxruntime-genai model folder under test, with its provenance."""
    return _session(pytestconfig).prepare(progress_writer(pytestconfig))


@pytest.fixture(scope="session")
def harness_deployment(pytestconfig: pytest.Config) -> Deployment:
    """The Foundry Local model folder (models/custom/<name>/ with inference_model.json)."""
    harness = _session(pytestconfig)
    laid_out = harness.deploy(progress_writer(pytestconfig))
    if laid_out is None:
        raise HarnessError(harness.deployment_error or "no Foundry Local folder")
    return laid_out


@pytest.fixture(scope="session")
def harness_twin_deployment(pytestconfig: pytest.Config, harness_deployment: Deployment) -> Deployment | None:
    """The deployment folder of the fp32-compute twin (None when the model has no twin)."""
    return _session(pytestconfig).deploy_twin(progress_writer(pytestconfig))


@pytest.fixture(scope="session")
def harness_gates(pytestconfig: pytest.Config) -> Gates:
    """The limits of this run (declared defaults, overridden by --gate / [tool.harness.gates])."""
    _session(pytestconfig)
    return pytestconfig.stash[GATES_KEY]


@pytest.fixture(scope="session")
def harness_run_dir(pytestconfig: pytest.Config, harness_model: PreparedModel) -> Path:
    """This run's report folder (reports/<timestamp>-<model>-<precision>/)."""
    return _session(pytestconfig).run_dir


ModelLoader = Callable[["PreparedModel"], "Runtime"]


@pytest.fixture(scope="session")
def harness_runtime_loader(pytestconfig: pytest.Config) -> ModelLoader:
    """Load a model into a new runtime (the caller closes it): the plugged-in factory's, or onnxruntime-genai's."""
    ep = pytestconfig.stash[CONFIG_KEY].ep
    plugged = pytestconfig.stash.get(FACTORY_KEY, None)

    def load(model: PreparedModel) -> Runtime:
        if plugged is not None:
            return plugged[0](model.path, ep)
        from harness.runtime.genai import GenAIRuntime

        try:
            return GenAIRuntime(model.path, ep)
        except HarnessError as exc:
            pytest.exit(one_line(exc), returncode=pytest.ExitCode.USAGE_ERROR)

    return load


@pytest.fixture(scope="session")
def harness_worker_runtime(pytestconfig: pytest.Config) -> str | None:
    """The plugged-in runtime factory's reference for the worker process (None: onnxruntime-genai's)."""
    plugged = pytestconfig.stash.get(FACTORY_KEY, None)
    return None if plugged is None else plugged[1]


@pytest.fixture(scope="session")
def harness_runtime(pytestconfig: pytest.Config, harness_runtime_loader: ModelLoader,
                    harness_model: PreparedModel) -> Iterator[Runtime]:
    """The model loaded once for the whole session (released while a suite runs copies the memory plan cannot fit
    beside it; it loads again when a check next uses it)."""
    loaded = harness_runtime_loader(harness_model)
    _session(pytestconfig).runtime = loaded
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def harness_ab(pytestconfig: pytest.Config, harness_runtime_loader: ModelLoader,
               harness_model: PreparedModel) -> Iterator[ABModels | None]:
    """The --harness-ab baseline, and a second copy of the model under test loaded after it (``ABModels``), for the
    module that asks (closed at its end, so that they hold memory only while the benchmarks run); None without the
    option."""
    from harness.checks.ab import ABModels
    from harness.runtime.protocol import SearchOptions

    model = _session(pytestconfig).prepare_ab(progress_writer(pytestconfig))
    if model is None:
        yield None
        return
    baseline = harness_runtime_loader(model)
    after = harness_runtime_loader(harness_model)
    for runtime in (baseline, after):  # a first generation is slower: none of them is timed
        runtime.generate("Hello.", SearchOptions(max_new_tokens=4, margins=False))
    yield ABModels(baseline, after)
    after.close()
    baseline.close()


@pytest.fixture(scope="session")
def harness_yardstick() -> Yardstick:
    """The machine yardstick: a fixed workload the benchmarks time beside each round (``harness.checks.yardstick``)."""
    from harness.checks.yardstick import Yardstick

    return Yardstick()


class PathsFactory(Protocol):
    def __call__(self, model: PreparedModel, loaded: Runtime | None = None,
                 without_twin: str | None = None) -> AbstractContextManager[ComputePaths]:
        """The model (``loaded`` if it is already) and its twin as compute paths (not the twin, for the reason
        ``without_twin`` gives); what it loads closes on exit."""
        ...


def _path_label(levels: Mapping[int, int]) -> str:
    return "as built" if not levels else f"as built (accuracy_level {'/'.join(map(str, sorted(levels)))})"


@pytest.fixture(scope="session")
def harness_paths_factory(pytestconfig: pytest.Config, harness_runtime_loader: ModelLoader) -> PathsFactory:
    """Load a model and, when its kernels depend on the CPU, its fp32-compute twin; both close on exit."""

    from harness.build.compute_paths import TWIN_LEVEL, accuracy_levels
    from harness.checks.stability import ComputePath, ComputePaths

    @contextlib.contextmanager
    def open_paths(model: PreparedModel, loaded: Runtime | None = None,
                   without_twin: str | None = None) -> Iterator[ComputePaths]:
        harness = _session(pytestconfig)
        opened: list[Runtime] = []
        try:
            if loaded is None:
                loaded = harness_runtime_loader(model)
                opened.append(loaded)
            paths = [ComputePath(_path_label(accuracy_levels(model.path)), loaded)]
            twin = harness.twin_of(model, progress_writer(pytestconfig))
            if twin is not None and without_twin is None:
                opened.append(harness_runtime_loader(twin))
                paths.append(ComputePath(f"fp32-compute twin (accuracy_level {TWIN_LEVEL})", opened[-1]))
            yield ComputePaths(tuple(paths), without_twin if twin is not None else None)
        finally:
            for runtime in opened:
                runtime.close()

    return open_paths


@pytest.fixture(scope="module")
def harness_paths(request: pytest.FixtureRequest, harness_runtime: Runtime, harness_model: PreparedModel,
                  harness_paths_factory: PathsFactory) -> Iterator[ComputePaths]:
    """The runtimes greedy answers are judged on: the model under test (the ``harness_runtime`` fixture), and its
    fp32-compute twin when the model's kernels depend on the CPU. The twin is loaded for the module that judges with
    it and released after it; where the memory plan cannot fit it beside a shipped suite's other copies, the suite
    judges the model as built alone and each verdict says so (finding ``no-fp32-twin``)."""
    memory = _session(request.config).memory
    without_twin = None
    if memory is not None and request.path.parent == _shipped_suites():
        without_twin = memory.twin_skip_reason(request.path.name)
    with harness_paths_factory(harness_model, harness_runtime, without_twin) as paths:
        if paths.without_twin is not None:
            progress_writer(request.config)(f"{request.path.name}: no fp32-compute twin: {paths.without_twin}")
        yield paths


Settle = Callable[["PathVerdict"], None]
ReportFinding = Callable[[str, str], None]


@pytest.fixture
def harness_finding(record_property: Callable[[str, object], None]) -> ReportFinding:
    """Report a finding: ``harness_finding(kind, text)``. It never hides under the check's outcome: the terminal
    summary, JUnit properties, results.json, summary.md and report.html show it, passed or not."""
    reported = itertools.count(1)

    def report(kind: str, text: str) -> None:
        record_property(finding_property(kind, next(reported)), text)

    return report


RecordAnswer = Callable[["Prompt", "Generation"], None]


@pytest.fixture
def harness_answer(harness_runtime: Runtime, record_property: Callable[[str, object], None]) -> RecordAnswer:
    """Record an answer with what the model read: ``harness_answer(prompt, generation)``. Chat messages are
    rendered through the model's chat template (its default system prompt included). results.json and report.html
    show the answers of passing checks too."""
    recorded = itertools.count(1)

    def record(prompt: Prompt, generation: Generation) -> None:
        from harness.runtime.protocol import rendered_prompt

        read = clip_middle(rendered_prompt(harness_runtime, prompt), ANSWER_TEXT_LIMIT)
        record_property(answer_property(next(recorded)), json.dumps({  # JSON: --junitxml writes it as it is
            "prompt": read, "answer": clip(generation.text, ANSWER_TEXT_LIMIT),
            "stop_reason": generation.stop_reason, "output_tokens": generation.output_tokens}, ensure_ascii=False))

    return record


@pytest.fixture
def harness_verdict(harness_paths: ComputePaths, record_property: Callable[[str, object], None]) -> Settle:
    """Settle a check's verdict over the compute paths: return on a pass, fail on a failure, and raise
    ``UnstableVerdict`` when the paths disagree. Records the compute paths' outcomes and the smallest margin."""
    from harness.checks.stability import Outcome, UnstableVerdict, minimum_margin, weakest_decisions

    def settle(verdict: PathVerdict) -> None:
        record_property("compute_paths", {j.label: "passed" if j.passed else "failed" for j in verdict.judgements})
        if harness_paths.without_twin is not None:
            record_property(finding_property(NO_TWIN_FINDING, 1), f"judged as built only, on no fp32-compute twin "
                            f"(the verdict may hang on a near-tie another CPU breaks): {harness_paths.without_twin}")
        built = verdict.judgements[0].answers
        margin = minimum_margin(built)
        if margin is not None:
            record_property("margin_min", round(margin, 4))
            record_property("weakest_decisions", [line for answer in built
                                                  for line in weakest_decisions(answer, harness_paths.primary.decode)])
        outcome = verdict.outcome
        if outcome is Outcome.PASSED:
            return
        message = verdict.explain(harness_paths.primary.decode)
        if outcome is Outcome.UNSTABLE:
            raise UnstableVerdict(message)
        pytest.fail(message, pytrace=False)

    return settle


@pytest.fixture(scope="module")
def harness_prober(request: pytest.FixtureRequest, harness_model: PreparedModel, harness_config: HarnessConfig,
                   harness_gates: Gates, harness_run_dir: Path, harness_worker_runtime: str | None) -> Iterator[Prober]:
    """A robustness prober for the test module (its own worker process, on the plugged-in runtime); its outcome
    counts go to robustness/<module without test_>.json in the run's report folder."""
    from harness.robustness.prober import session

    counts = harness_run_dir / "robustness" / f"{request.path.stem.removeprefix('test_')}.json"
    yield from session(harness_model.path, harness_config.ep, harness_gates, counts, harness_worker_runtime)


@pytest.fixture(scope="session")
def harness_parity_reference(pytestconfig: pytest.Config, harness_reference_folder: Path, harness_runtime: Runtime,
                             harness_config: HarnessConfig, harness_run_dir: Path) -> ReferenceData:
    """The reference's view of the eval set and of this run's case prompts: computed once per
    reference (in a child process, cached) and shared by the parity suite and the precision comparison."""
    return _reference_of(pytestconfig, harness_reference_folder, harness_runtime, harness_config, harness_run_dir)


@pytest.fixture(scope="session")
def harness_parity(harness_runtime: Runtime, harness_parity_reference: ReferenceData) -> ParityReport:
    """The built model measured against the reference over the eval set, once a session: the parity suite's figures,
    and the built model's log-likelihoods the retention suite reads."""
    from harness.checks.parity import measure_parity
    from harness.runtime.protocol import LogitsRuntime

    assert isinstance(harness_runtime, LogitsRuntime)  # harness_parity_reference skipped otherwise
    return measure_parity(harness_runtime, harness_parity_reference)


@pytest.fixture(scope="session")
def harness_base_reference(pytestconfig: pytest.Config, harness_runtime: Runtime, harness_config: HarnessConfig,
                           harness_run_dir: Path) -> ReferenceData:
    """The base model's view of the same eval set and case prompts (--base-model, or the base an adapter names),
    for fine-tune retention; skips without a base."""
    _skip_without_reference_packages()
    folder = _session(pytestconfig).base_folder(progress_writer(pytestconfig))
    if folder is None:
        pytest.skip("no base model: pass --base-model PATH (the model you fine-tuned from) to measure how much of "
                    "the fine-tune the build keeps")
    return _reference_of(pytestconfig, folder, harness_runtime, harness_config, harness_run_dir)


def _reference_of(pytestconfig: pytest.Config, folder: Path, runtime: Runtime, config: HarnessConfig,
                  run_dir: Path) -> ReferenceData:
    """``folder``'s answers and scores for the eval set and this run's case prompts, in the runtime's token ids."""
    from harness.checks.reference import CASE_PREFIX, EvalPrompt, reference_data
    from harness.runtime.protocol import LogitsRuntime

    if not isinstance(runtime, LogitsRuntime):
        pytest.skip(f"the runtime in use ({type(runtime).__name__}) has no logits(): parity compares "
                    "next-token distributions")
    memory = _session(pytestconfig).memory
    precision = memory.reference_precision if memory else "fp32"
    too_big = memory.skip_reason(memory.reference) if memory else None
    if too_big is not None:
        pytest.skip(too_big)
    cases = [EvalPrompt(CASE_PREFIX + case.id, case.prompt) for case in _cases(pytestconfig)]
    eval_set = _eval_set(pytestconfig).with_prompts(cases)
    if runtime.info.chat_template is None:  # a base model: the chat prompts cannot be rendered
        eval_set = eval_set.raw_only()
    return reference_data(folder, runtime, eval_set, config.cache_dir, run_dir, progress_writer(pytestconfig),
                          precision)


@pytest.fixture(scope="session")
def harness_build_precision(pytestconfig: pytest.Config) -> Callable[[str], PreparedModel]:
    """Build (or find in the cache) the model at a given precision; raises BuildError if it cannot."""
    harness = _session(pytestconfig)
    return lambda precision: harness.prepare_precision(precision, progress_writer(pytestconfig))


def _skip_without_reference_packages() -> None:
    """A reference needs torch and transformers (the `convert` extra), which a torch-less install lacks: skip."""
    from harness.checks.reference import reference_unavailable

    reason = reference_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def harness_reference_folder(pytestconfig: pytest.Config, harness_model: PreparedModel) -> Path:
    """The Hugging Face folder of the reference model (fp32 source) for the parity suite; skips when
    the source is ONNX-only and no --reference is given."""
    _skip_without_reference_packages()
    folder = _session(pytestconfig).reference_folder(progress_writer(pytestconfig))
    if folder is None:
        pytest.skip("no reference model: the source is an ONNX model; pass --reference PATH "
                    "(Hugging Face folder or GGUF file) to compare with one")
    return folder
