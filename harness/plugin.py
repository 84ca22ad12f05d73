"""pytest hooks and options of the harness; the fixtures are in ``harness.fixtures``, the run's state in
``harness.run_state``, and the logic in the modules they call.

The plugin is inert unless the run needs a model: ``--model`` (or HARNESS_MODEL) is given, or
the run collects the shipped suites. Then, at session start, it resolves the model source
(one-line error if it is bad), prints what reproduces the run, and builds the model once (cached).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import builtins, fixtures, hookspecs, terminal
from harness.config.profiles import Profile
from harness.config.settings import PATH_METAVARS, SETTINGS, Settings, check_execution_provider, resolve
from harness.errors import HarnessError, one_line
from harness.locations import shipped_suites_dir, suites_dir
from harness.properties import OUTCOME_PROPERTY, SoftVerdict, soft_section, soft_verdict
from harness.run_state import STATE_KEY, RunState, active_session, run_state
from harness.terminal import progress_writer

# Everything else loads when a run engages the harness: importing this entry point (every pytest run of
# the environment loads it) must stay cheap; benchmarks/plugin_import.py measures it.
if TYPE_CHECKING:
    from harness.config.gates import Gates
    from harness.hookspecs import BuilderFactory
    from harness.runtime.factory import RuntimeFactory

CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
PATH_FLAGS = {s.flag for s in SETTINGS if s.metavar in PATH_METAVARS}
# A bad input is always a HarnessError (one line, exit 4); anything else is a bug in the harness.
INTERNAL_ERROR = "harness: internal error: a bug in the harness, not in your input; please report it with the traceback"
CHAT_MARKER = "harness_chat"
CASES_MARKER = "harness_cases"
NO_CHAT_TEMPLATE = ("the model has no chat template (a base model): its chat checks are skipped, its raw-prompt "
                    "checks run")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)
    pluginmanager.register(builtins, "harness-builtins")
    pluginmanager.register(fixtures, "harness-fixtures")


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


def _engaged(config: pytest.Config, settings: Settings) -> bool:
    if settings.model_given:
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


def _gates(config: pytest.Config, settings: Settings, pyproject: Path | None, ini_origin: str) -> Gates:
    from harness.config.gates import declare, resolve_gates

    return resolve_gates(
        declare(config.hook.pytest_harness_gates(config=config)), config.getoption("harness_gates"),
        table=settings.gate_table, table_origin=f"[tool.harness.gates] in {pyproject}",
        ini_lines=config.getini("harness_gates"), ini_origin=f"harness_gates in {ini_origin}")


def _runtime_factory(config: pytest.Config) -> tuple[RuntimeFactory, str] | None:
    """The runtime a conftest plugs in, with the reference the worker process imports it by."""
    from harness.runtime.factory import reference_of

    factory = config.hook.pytest_harness_runtime_factory(config=config)
    return None if factory is None else (factory, reference_of(factory))


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
        settings = resolve(cli, env=os.environ, pyproject=pyproject, ini=ini, ini_origin=ini_origin,
                           rootdir=config.rootpath,
                           registered={"profile": tuple(profiles), "builder": tuple(builders)})
        state = config.stash[STATE_KEY] = RunState(settings, profiles)
        if not _engaged(config, settings):
            return
        from harness.offline import disable_telemetry

        disable_telemetry()  # before anything loads onnxruntime, onnxruntime-genai or Foundry Local: no network
        from harness.checks.cases import default_case_paths, load_cases
        from harness.report.results import RunRecorder
        from harness.session import HarnessSession

        state.gates = _gates(config, settings, pyproject, ini_origin)
        _check_ep(settings.ep)
        state.cases = load_cases(settings.cases or default_case_paths())
        if settings.eval_texts:
            from harness.checks.reference import load_eval_texts

            state.eval_texts = load_eval_texts(settings.eval_texts)
        state.runtime_factory = _runtime_factory(config)
        ab_model = None if settings.ab is None else _model_of_run(settings.ab)
        harness = HarnessSession.open(settings, builders[settings.builder](settings), ab_model)
        refusal = harness.plan_memory(state.profile.max_prompt_tokens).refusal()
        if refusal is not None:
            raise HarnessError(refusal)
        state.session = harness
        config.pluginmanager.register(RunRecorder(harness, state.gates), "harness-results")
        _register_integrations(config, settings)
    except HarnessError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    except Exception as exc:
        exc.add_note(INTERNAL_ERROR)
        raise


def _register_integrations(config: pytest.Config, settings: Settings) -> None:
    """Glue to other plugins, only where they are installed (as pytest-randomly does)."""
    if config.pluginmanager.hasplugin("benchmark"):
        from harness.integrations.benchmark import BenchmarkIntegration

        config.pluginmanager.register(BenchmarkIntegration(settings.reports_dir), "harness-benchmark")
    if config.pluginmanager.hasplugin("xdist"):
        from harness.integrations.xdist import XdistIntegration

        config.pluginmanager.register(XdistIntegration(), "harness-xdist")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = active_session(config)
    return session.header_lines() if session else []


@pytest.hookimpl(trylast=True)  # after -k, -m and the other plugins' selection: a shard deals out what is left
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """This shard's checks (--harness-shard), then the shipped suites this run holds, in order (a time budget plans
    for them alone)."""
    state = run_state(config)
    if state is not None and state.settings.shard is not None:
        mine = state.settings.shard.selects(item.nodeid for item in items)
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in mine])
        items[:] = [item for item in items if item.nodeid in mine]
    harness = active_session(config)
    if harness is not None:
        harness.suite_modules = tuple(dict.fromkeys(item.path.name for item in items
                                                    if item.path.parent == shipped_suites_dir()))


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Build the model right after the header, so a failure is one line, not one error per test."""
    harness = active_session(session.config)
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
    harness = active_session(item.config)
    if harness is None:
        return
    if harness.memory is not None and item.path.parent == shipped_suites_dir():
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
    state = run_state(item.config)
    if call.excinfo is None or state is None or state.session is None:
        return report
    if call.excinfo.errisinstance(HarnessError):
        # One cause, said once: a session fixture that cannot set up (an unloadable reference) fails every check
        # that uses it with the same line; the later ones point back at the first.
        line = one_line(call.excinfo.value)
        first = state.first_seen.setdefault(line, item.nodeid)
        report.longrepr = line if first == item.nodeid else f"harness: the same error as {first} (above)"
        return report
    if not call.excinfo.errisinstance(SoftVerdict):
        return report
    verdict = call.excinfo.value
    assert isinstance(verdict, SoftVerdict)
    outcome, message = verdict.outcome, str(verdict)
    report.user_properties.append((OUTCOME_PROPERTY, outcome))
    if getattr(state.settings, outcome) == "fail":
        report.longrepr = f"{message}\n(--{outcome}=fail from {state.settings.origins[outcome]})"
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List findings (whatever the checks' outcomes) and soft verdicts, like pytest's short summary."""
    terminal.write_summary(terminalreporter)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``harness_case`` runs once per case of this run (``@pytest.mark.harness_cases(
    with_assertions=True)``: once per case that has assertions). A chat case needs the chat template. A test that
    takes ``harness_eval_text`` runs once per eval text of this run (its id)."""
    state = run_state(metafunc.config)
    if state is None:
        return
    if "harness_eval_text" in metafunc.fixturenames:
        metafunc.parametrize("harness_eval_text", [text.id for text in state.eval_set().texts])
    if "harness_case" not in metafunc.fixturenames:
        return
    cases = state.case_set().cases
    marker = metafunc.definition.get_closest_marker(CASES_MARKER)
    if marker is not None and marker.kwargs.get("with_assertions"):
        cases = tuple(case for case in cases if case.assertions)
    chat = pytest.mark.harness_chat
    metafunc.parametrize("harness_case", [pytest.param(case, id=case.id,
                                                       marks=() if isinstance(case.prompt, str) else chat)
                                          for case in cases])
