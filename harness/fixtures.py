"""The harness's fixtures (``harness_*``): the model under test, its runtime and compute paths, gates, cases,
references, and the recorders of findings, answers and verdicts. Registered by ``harness.plugin``; they read the
run's state (``harness.run_state``) and load what they need on first use.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from harness.config.profiles import Profile
from harness.config.settings import Settings
from harness.errors import HarnessError, one_line
from harness.locations import shipped_suites_dir
from harness.properties import ANSWER_TEXT_LIMIT, answer_property, finding_property
from harness.run_state import NOT_ACTIVE, active_session, engaged_state, run_state
from harness.terminal import progress_writer
from harness.text import clip, clip_middle

if TYPE_CHECKING:
    from harness.capacity.plan import MemoryPlan
    from harness.checks.ab import ABModels
    from harness.checks.cases import CaseSet
    from harness.checks.parity import ParityReport, ReferenceData
    from harness.checks.stability import ComputePaths, PathVerdict
    from harness.checks.yardstick import Yardstick
    from harness.config.budget import BudgetClock
    from harness.config.gates import Gates
    from harness.deploy.folder import Deployment
    from harness.preparation.pipeline import PreparedModel
    from harness.robustness.prober import Prober
    from harness.runtime.protocol import Generation, Prompt, Runtime
    from harness.session import HarnessSession

NO_TWIN_FINDING = "no-fp32-twin"


def _session(config: pytest.Config) -> HarnessSession:
    """The harness session; a check that needs one skips in a run that does not engage the harness."""
    session = engaged_state(config).session
    assert session is not None
    return session


@pytest.fixture(scope="session")
def harness_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings of this run."""
    state = run_state(pytestconfig)
    if state is None:
        pytest.skip(NOT_ACTIVE)
    return state.settings


@pytest.fixture(scope="session")
def harness_cases(pytestconfig: pytest.Config) -> CaseSet:
    """The validated cases of this run (--cases, or the shipped sets)."""
    return engaged_state(pytestconfig).case_set()


@pytest.fixture(scope="module")
def harness_profile(request: pytest.FixtureRequest, harness_settings: Settings) -> Profile:
    """Sample counts for this run's profile (smoke, full, or one a conftest adds); with --harness-budget, fitted
    again before each module to what is left of the budget (module-scoped: a count read in one module holds there)."""
    state = run_state(request.config)
    assert state is not None  # harness_settings skipped otherwise
    profile = state.profile
    if harness_settings.budget is None:
        return profile
    clock = _budget_clock(request)
    return clock.scaling.profile if clock.scaling is not None else profile


def _budget_clock(request: pytest.FixtureRequest) -> BudgetClock:
    """The run's budget clock, made on first use: it measures the model's pace once."""
    state = engaged_state(request.config)
    assert state.session is not None
    clock = state.session.clock
    return clock or state.session.start_budget_clock(request.getfixturevalue("harness_runtime"), state.profile)


@pytest.fixture(scope="module", autouse=True)
def harness_module_start(request: pytest.FixtureRequest) -> None:
    """Before each module: with a budget, the module starts on the budget's clock (the previous one is timed, the
    counts fitted again to what is left, and a shipped suite says what it should take and how much of the budget is
    left); and a shipped suite whose copies the memory plan cannot fit beside the session's model runs with it
    released (it loads again when a check next uses it)."""
    harness = active_session(request.config)
    if harness is None:
        return
    progress = progress_writer(request.config)
    if harness.settings.budget is not None:
        lines = _budget_clock(request).enter(request.path.name, time.monotonic())
        for line in lines:
            progress(line)
        harness.budget = [*(harness.budget or []), *lines]
        harness.write_provenance()
    from harness.runtime.protocol import ReleasableRuntime

    runtime = harness.runtime
    reason = harness.memory.release_reason(request.path.name) if harness.memory is not None else None
    if reason and request.path.parent == shipped_suites_dir() and isinstance(runtime, ReleasableRuntime) \
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
    gates = engaged_state(pytestconfig).gates
    assert gates is not None  # set with the session
    return gates


@pytest.fixture(scope="session")
def harness_run_dir(pytestconfig: pytest.Config, harness_model: PreparedModel) -> Path:
    """This run's report folder (reports/<timestamp>-<model>-<precision>/)."""
    return _session(pytestconfig).run_dir


ModelLoader = Callable[["PreparedModel"], "Runtime"]


@pytest.fixture(scope="session")
def harness_runtime_loader(pytestconfig: pytest.Config) -> ModelLoader:
    """Load a model into a new runtime (the caller closes it): the plugged-in factory's, or onnxruntime-genai's."""
    state = engaged_state(pytestconfig)
    ep, plugged = state.settings.ep, state.runtime_factory

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
    plugged = engaged_state(pytestconfig).runtime_factory
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

    from harness.checks.stability import ComputePath, ComputePaths
    from harness.preparation.compute_paths import TWIN_LEVEL, accuracy_levels

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
    if memory is not None and request.path.parent == shipped_suites_dir():
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
def harness_prober(request: pytest.FixtureRequest, harness_model: PreparedModel, harness_settings: Settings,
                   harness_gates: Gates, harness_run_dir: Path, harness_worker_runtime: str | None) -> Iterator[Prober]:
    """A robustness prober for the test module (its own worker process, on the plugged-in runtime); its outcome
    counts go to robustness/<module without test_>.json in the run's report folder."""
    from harness.robustness.prober import session

    counts = harness_run_dir / "robustness" / f"{request.path.stem.removeprefix('test_')}.json"
    yield from session(harness_model.path, harness_settings.ep, harness_gates, counts, harness_worker_runtime)


@pytest.fixture(scope="session")
def harness_parity_reference(pytestconfig: pytest.Config, harness_reference_folder: Path, harness_runtime: Runtime,
                             harness_settings: Settings, harness_run_dir: Path) -> ReferenceData:
    """The reference's view of the eval set and of this run's case prompts: computed once per
    reference (in a child process, cached) and shared by the parity suite and the precision comparison."""
    return _reference_of(pytestconfig, harness_reference_folder, harness_runtime, harness_settings, harness_run_dir)


@pytest.fixture(scope="session")
def harness_parity(harness_runtime: Runtime, harness_parity_reference: ReferenceData) -> ParityReport:
    """The built model measured against the reference over the eval set, once a session: the parity suite's figures,
    and the built model's log-likelihoods the retention suite reads."""
    from harness.checks.parity import measure_parity
    from harness.runtime.protocol import LogitsRuntime

    assert isinstance(harness_runtime, LogitsRuntime)  # harness_parity_reference skipped otherwise
    return measure_parity(harness_runtime, harness_parity_reference)


@pytest.fixture(scope="session")
def harness_base_reference(pytestconfig: pytest.Config, harness_runtime: Runtime, harness_settings: Settings,
                           harness_run_dir: Path) -> ReferenceData:
    """The base model's view of the same eval set and case prompts (--base-model, or the base an adapter names),
    for fine-tune retention; skips without a base."""
    _skip_without_reference_packages()
    folder = _session(pytestconfig).base_folder(progress_writer(pytestconfig))
    if folder is None:
        pytest.skip("no base model: pass --base-model PATH (the model you fine-tuned from) to measure how much of "
                    "the fine-tune the build keeps")
    return _reference_of(pytestconfig, folder, harness_runtime, harness_settings, harness_run_dir)


def _reference_of(pytestconfig: pytest.Config, folder: Path, runtime: Runtime, config: Settings,
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
    state = engaged_state(pytestconfig)
    cases = [EvalPrompt(CASE_PREFIX + case.id, case.prompt) for case in state.case_set()]
    eval_set = state.eval_set().with_prompts(cases)
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
