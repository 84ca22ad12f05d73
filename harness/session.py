"""The state of one harness run: settings, model source, build plan, built model, report folder.

Kept free of pytest hooks so that it can be driven (and tested) without a pytest session.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.capacity.memory import Available, available_memory, format_size
from harness.capacity.model_facts import ModelFacts, model_facts
from harness.capacity.plan import (
    MemoryPlan,
    Need,
    build_need,
    built_bytes,
    choose_reference,
    conversion_need,
    load_bytes,
    longest_prompt_need,
    merge_need,
    plan,
    resident_bytes,
    suite_need,
)
from harness.checks.ab import AB_MIN_PAIRS
from harness.config.budget import (
    REFERENCE_SECONDS_PER_PARAMETER,
    SMOKE_SUITE_SECONDS,
    BudgetClock,
    ab_seconds,
    measure_pace,
)
from harness.config.profiles import Profile
from harness.config.settings import Settings
from harness.deploy.folder import (
    INFERENCE_MODEL,
    Deployment,
    build_document,
    check_chat_template,
    check_user_document,
    load_user_document,
    write_deployment,
)
from harness.deploy.templates import TemplateError
from harness.errors import HarnessError, SourceError
from harness.folders import claim_new_dir, writable_dir
from harness.fsutil import write_text_atomic
from harness.length_plan import CONTEXT_MARGIN
from harness.locations import suites_dir
from harness.preparation.builders import Builder
from harness.preparation.buildlog import Progress
from harness.preparation.cache import MANIFEST, ModelStore
from harness.preparation.compute_paths import (
    TWIN_LEVEL,
    DamagedModelFile,
    accuracy_levels,
    describe_levels,
    host_dependent,
)
from harness.preparation.hashing import HashMemo
from harness.preparation.merge import TEMPLATE_FILES, TOKENIZER_FILES
from harness.preparation.optional import require_build_packages
from harness.preparation.pipeline import (
    BuildPlan,
    PreparedModel,
    cached_path,
    convert_source,
    derive_variant,
    make_plan,
    merge_adapter,
    prepare,
)
from harness.preparation.sources import ModelSource, SourceKind, detect_base, detect_source, with_base
from harness.provenance import REPORTED_PACKAGES, machine_fingerprint, versions
from harness.runtime.protocol import Runtime

AB_SUITE = "test_benchmarks.py"  # the suite that times the model under test against the --harness-ab baseline
PLANNED_BUILDERS = ("model-builder", "olive")  # the builders whose memory the plan measured (both run the builder)


def _template_folder(source: ModelSource) -> Path | None:
    """The folder whose chat template the built model gets: the source's; an adapter's own when it saved a tokenizer
    or template (``harness.preparation.merge``), else its base's; None for a GGUF (its template is read at
    conversion)."""
    if source.kind is SourceKind.ADAPTER and not any((source.path / name).is_file()
                                                     for name in (*TOKENIZER_FILES, *TEMPLATE_FILES)):
        source = source.weights
    return None if source.kind is SourceKind.GGUF else source.path


def _check_template(source: ModelSource) -> None:
    """A chat template that cannot render one message stops the run at start: every chat check would fail on it."""
    folder = _template_folder(source)
    if folder is None:
        return
    try:
        check_chat_template(folder)
    except TemplateError as exc:
        raise SourceError(f"--model {folder}: {exc}; fix chat_template.jinja or the chat_template in "
                          "tokenizer_config.json") from None
    except HarnessError as exc:
        raise SourceError(f"--model {folder}: {exc}") from None


def weights_facts(source: ModelSource, facts: ModelFacts | None = None) -> ModelFacts:
    """The facts of the Hugging Face folder a buildable source becomes, before it is made: a GGUF's fp32 conversion,
    an adapter's base (merged at its dtype); for other sources, their own. ``facts``: those of ``source.weights``,
    when they are read already."""
    facts = facts or model_facts(source.weights.path)
    if source.weights.kind is SourceKind.GGUF:
        facts = replace(facts, weight_bytes=4 * (facts.parameters or 0))
    return facts


def _check_graphs(folder: Path, cached: bool) -> None:
    """The model's ONNX files decode and their weights files are whole, before anything loads them."""
    try:
        accuracy_levels(folder)
    except DamagedModelFile as exc:
        if not cached:
            raise SourceError(f"--model {folder}: {exc}") from None
        raise SourceError(f"the cached build {folder} is damaged: {exc.problem}; delete that folder and rerun to "
                          "rebuild it") from None


@dataclass
class HarnessSession:
    settings: Settings
    source: ModelSource
    plan: BuildPlan
    builder: Builder
    store: ModelStore
    cache_hit_at_start: bool
    reference_source: ModelSource | None = None  # the fp32 model parity compares with (None: ONNX-only)
    base_source: ModelSource | None = None  # --base-model, or the base an adapter names (an adapter's is merged)
    ab_source: ModelSource | None = None  # the baseline model the benchmarks time this one against (--harness-ab)
    ab_model: PreparedModel | None = None
    started: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    prepared: PreparedModel | None = None
    levels: dict[int, int] = field(default_factory=dict)  # MatMulNBits nodes per accuracy level, once prepared
    twin_model: PreparedModel | None = None
    deployment: Deployment | None = None
    deployment_error: str | None = None
    claimed_run_dir: Path | None = None
    budget: list[str] | None = None  # what --harness-budget scaled, once the profile is fitted
    memory: MemoryPlan | None = None  # the memory plan, made at session start (plan_memory)
    clock: BudgetClock | None = None  # --harness-budget through the run, once the first module starts
    runtime: Runtime | None = None  # the session's loaded model, once a check asked for it
    suite_modules: tuple[str, ...] = ()  # the shipped suite modules this run holds, in order (after collection)
    opened_at: float = field(default_factory=time.monotonic)  # where a time budget starts counting

    @classmethod
    def open(cls, settings: Settings, builder: Builder, ab_model: Path | None = None) -> HarnessSession:
        """Detect the source and plan the build; raises SourceError / ConfigError on bad input. ``ab_model``: the
        --harness-ab baseline's model when ``settings.ab`` names a run rather than a model
        (``harness.report.runs.model_of_run``)."""
        source = detect_source(settings.model)
        base = None if settings.base_model is None else detect_base(settings.base_model)
        if source.kind is SourceKind.ADAPTER:
            source = with_base(source, base)
            base = source.base
        _check_template(source)
        writable_dir(settings.reports_dir, "--harness-reports")
        store = ModelStore(writable_dir(settings.cache_dir, "--harness-cache-dir"))
        plan = make_plan(source, settings.precision, settings.ep, builder, HashMemo(settings.cache_dir / "hashes.json"))
        found = cached_path(plan, store)
        if found is not None:
            _check_graphs(found, cached=plan.needs_build)
        hit = found is not None
        # no torch (win_arm64): one line now, not a failed build later
        require_build_packages(plan.source, plan.builder, cached=hit)
        reference = source if source.kind.needs_build else None
        if settings.reference is not None:
            reference = detect_source(settings.reference, "--reference")
            if not reference.kind.holds_weights:
                raise SourceError(f"--reference {settings.reference} is a {reference.kind} model; the "
                                  "reference must be a Hugging Face folder or a GGUF file")
        if settings.inference_config is not None:
            check_user_document(settings.inference_config)
        ab_path = ab_model or settings.ab
        ab = None if ab_path is None else detect_source(ab_path, "--harness-ab")
        if ab is not None and ab.kind is SourceKind.ADAPTER:  # an earlier fine-tune of the same base, as a rule
            ab = with_base(ab, base if settings.base_model is not None else None, "--harness-ab")
        return cls(settings, source, plan, builder, store, hit, reference, base, ab)

    @property
    def precision_label(self) -> str:
        return self.settings.precision if self.plan.needs_build else "prebuilt"

    @property
    def run_dir(self) -> Path:
        """This run's report folder (once claimed; before that, the name it will try first)."""
        planned = self.settings.reports_dir / f"{self.started}-{self.source.name}-{self.precision_label}"
        return self.claimed_run_dir or planned

    def claim_run_dir(self) -> Path:
        """Create the report folder; sessions (or xdist workers) started in the same second each
        get their own, suffixed -2, -3, ..."""
        if self.claimed_run_dir is None:
            self.claimed_run_dir = claim_new_dir(self.run_dir)
        return self.claimed_run_dir

    def plan_memory(self, longest_prompt: int | None, available: Available | None = None) -> MemoryPlan:
        """Each phase's predicted peak against the memory this run may use (``--harness-memory`` or what the machine
        has): the conversion and build when they will run, the reference, and each shipped suite with prompts of up
        to ``longest_prompt`` tokens."""
        available = available or available_memory(self.settings.memory, self.settings.origins.get("memory", ""))
        must: list[Need] = []
        source = model_facts(self.source.weights.path)  # each file's metadata read once: a GGUF header takes ~70 ms
        built = cached_path(self.plan, self.store)
        measured_builder = self.builder.name in PLANNED_BUILDERS  # another builder's costs are its own
        if self.plan.needs_build and built is None:
            merge = bool(self.plan.merge_key) and self.store.lookup("hf", self.plan.merge_key) is None
            converted = (not merge and bool(self.plan.merge_key)) or self.store.lookup("hf", self.plan.convert_key)
            if self.source.weights.kind is SourceKind.GGUF and measured_builder and not converted:
                must.append(conversion_need(source))
            if merge:  # the harness's own step, whatever the builder
                must.append(merge_need(weights_facts(self.source, source)))
            if measured_builder:
                must.append(build_need(self.settings.precision, source))
        # The model under test: the built folder once there is one (measured), else the source (predicted).
        facts = source if built is None or built == self.source.weights.path else model_facts(built)
        model_bytes = facts.weight_bytes if built is not None else built_bytes(self.settings.precision, source)
        longest = min(longest_prompt or facts.context_length, facts.context_length - CONTEXT_MARGIN)
        suites = [suite_need(path.name, facts, model_bytes) for path in sorted(suites_dir().glob("test_*.py"))]
        if self.ab_source is not None:  # the benchmarks hold the A/B baseline beside the model under test
            suites = [self._with_ab(need, facts, model_bytes) if need.phase == AB_SUITE else need for need in suites]
        suites.append(longest_prompt_need(facts, model_bytes, longest))
        precision, reference = "fp32", None
        if self.reference_source is not None:
            # the reference reads a GGUF's fp32 conversion, an adapter's merged folder
            reference_facts = weights_facts(self.reference_source,
                                            source if self.reference_source == self.source else None)
            precision, reference = choose_reference(self.settings.reference_precision, reference_facts, facts,
                                                    model_bytes, available)
        self.memory = plan(available, must, suites, reference, precision, facts, model_bytes, longest_prompt)
        return self.memory

    def _with_ab(self, need: Need, facts: ModelFacts, model_bytes: int) -> Need:
        """The benchmark suite's need with the --harness-ab baseline, and a second copy of the model under test
        (``ABModels``), loaded beside the session's model."""
        assert self.ab_source is not None
        built = self.ab_model.path if self.ab_model is not None else (
            None if self.ab_source.kind.needs_build else self.ab_source.path)
        baseline = model_facts(built) if built is not None else weights_facts(self.ab_source)
        weights = baseline.weight_bytes if built is not None else built_bytes(self.settings.precision, baseline)
        return replace(need, bytes=need.bytes + load_bytes(baseline, weights) + load_bytes(facts, model_bytes),
                       basis=f"{need.basis}, the A/B baseline's {format_size(resident_bytes(baseline, weights))} of "
                             "resident weights and a second copy of the model's")

    def start_budget_clock(self, runtime: Runtime, profile: Profile) -> BudgetClock:
        """--harness-budget's clock, started when the first module does: it measures the model's pace once, and
        plans for the shipped suites this run holds (those the memory plan skips take no time)."""
        assert self.settings.budget is not None
        suites = self.suite_modules or tuple(SMOKE_SUITE_SECONDS)  # a run of own suites alone: as a whole one
        memory = self.memory
        if memory is not None:
            suites = tuple(name for name in suites if memory.skip_reason(memory.suites.get(name)) is None)
        parity = "test_parity.py" in suites and (memory is None or memory.skip_reason(memory.reference) is None)
        cold = {"test_parity.py": self.reference_seconds()} if parity else {}
        if "test_retention.py" in suites and self.base_source is not None:
            cold["test_retention.py"] = self.reference_seconds(base=True)
        pace, context = measure_pace(runtime), runtime.info.context_length
        if self.ab_source is not None and AB_SUITE in suites:
            cold[AB_SUITE] = ab_seconds(profile, context, pace, AB_MIN_PAIRS)
        self.clock = BudgetClock(self.settings.budget, self.opened_at, pace, profile, context, suites, cold)
        return self.clock

    def reference_seconds(self, base: bool = False) -> float:
        """What computing the parity reference (or, ``base``, the base model's view for retention) will add to this
        run: none once the cache holds one for it, else its predicted time
        (``budget.REFERENCE_SECONDS_PER_PARAMETER``)."""
        reference = self.base_source if base else self.reference_source
        if reference is None:
            return 0.0
        folder = reference.path
        if reference.kind is SourceKind.GGUF:  # the reference reads its conversion
            folder = self.store.entry("hf", self._reference_plan(reference).convert_key)
        elif reference.kind is SourceKind.ADAPTER:  # and an adapter's merged folder
            folder = self.store.entry("hf", self.plan.merge_key)
        precision = self.memory.reference_precision if self.memory else "fp32"
        for entry in (self.store.root / "reference").glob(f"*/{MANIFEST}"):
            with contextlib.suppress(OSError, ValueError):
                metadata = json.loads(entry.read_text(encoding="utf-8"))
                if metadata.get("reference") == str(folder) and metadata.get("precision", "fp32") == precision:
                    return 0.0
        return REFERENCE_SECONDS_PER_PARAMETER * (model_facts(reference.weights.path).parameters or 0)

    def header_lines(self) -> list[str]:
        src, plan = self.source, self.plan
        default = ", embedded default" if src.is_default else ""
        if not plan.needs_build:
            cache = "not needed (prebuilt ONNX model)"
            build = "precision and builder: as built"
        else:
            where = self.store.entry("onnx", plan.key)
            cache = f"hit {where}" if self.cache_hit_at_start else f"miss, will build into {where}"
            build = f"precision {plan.precision}, builder {plan.builder} ({self.builder.describe()})"
        packages = ", ".join(f"{k} {v}" for k, v in versions(REPORTED_PACKAGES).items())
        machine = machine_fingerprint()
        found = cached_path(plan, self.store)
        compute = describe_levels(accuracy_levels(found)) if found else "accuracy levels known after the build"
        if self.settings.accuracy_level is not None:
            compute += f"; tested at accuracy_level {self.settings.accuracy_level} (--accuracy-level)"
        return [
            f"harness: model {src.path} ({src.kind}{default}), sha256 {plan.source_hash[:16]}",
            *self._base_lines(),
            f"harness: {build}, ep {self.settings.ep}, profile {self.settings.profile}, "
            f"unstable verdicts {self.settings.unstable}",
            f"harness: cache {cache}",
            f"harness: {packages}",
            f"harness: cpu {machine['cpu']}, {machine['cores']} cores, instruction set {machine['isa']} "
            f"({machine['isa_flags'] or 'flags unknown'})",
            f"harness: compute {compute}",
            *(self.memory.lines() if self.memory else []),
            *([f"harness: A/B: the benchmarks time this model against {self.ab_source.path} (--harness-ab)"]
              if self.ab_source else []),
            *([f"harness: shard {self.settings.shard} of the checks (--harness-shard); `harness merge` joins the "
               "shards' reports"] if self.settings.shard else []),
            f"harness: reports {self.run_dir}",
        ]

    def _base_lines(self) -> list[str]:
        """The header's line for --base-model, or the base an adapter merges into."""
        base = self.base_source
        if base is None:
            return []
        origin = "--base-model" if self.settings.base_model is not None else "named by the adapter's config"
        line = f"harness: base model {base.path} ({base.kind}, {origin})"
        if self.plan.merge_key:
            merged = self.store.lookup("hf", self.plan.merge_key)
            cache = (f"cache hit {merged}" if merged else "not needed: the build is cached" if self.cache_hit_at_start
                     else f"miss, will merge into {self.store.entry('hf', self.plan.merge_key)}")
            line += (f", sha256 {self.plan.base_hash[:16]}; the adapter merges into it with peft "
                     f"{versions(('peft',))['peft']} ({cache})")
        return [line]

    def prepare(self, progress: Progress) -> PreparedModel:
        """Build (or find) the model and record provenance in the run's report folder."""
        if self.prepared is None:
            planned, claimed = self.run_dir, self.claim_run_dir()
            if claimed != planned:
                progress(f"reports {claimed} ({planned.name} was taken by a concurrent run)")
            built = prepare(self.plan, self.store, self.builder, claimed, progress)
            self.prepared = self._at_accuracy_level(built, progress)
            self.levels = dict(accuracy_levels(self.prepared.path))
            if self.memory is not None and not self.cache_hit_at_start:  # the built model's size is known now
                self.plan_memory(self.memory.longest_prompt, self.memory.available)
            if not self.cache_hit_at_start or self.settings.accuracy_level is not None:  # else the header said it
                progress(f"compute path: {describe_levels(self.levels)}")
            self.write_provenance()
        return self.prepared

    def _at_accuracy_level(self, model: PreparedModel, progress: Progress) -> PreparedModel:
        """The model at --accuracy-level (a derived variant), or as built."""
        level = self.settings.accuracy_level
        if level is None:
            return model
        levels = accuracy_levels(model.path)
        if not levels:
            progress(f"--accuracy-level {level} changes nothing: {model.path} has no MatMulNBits nodes")
            return model
        if set(levels) == {level}:
            return model
        return derive_variant(model, level, self.store, progress)

    def twin(self, progress: Progress) -> PreparedModel | None:
        """The fp32-compute twin of the model under test, or None when its kernels do not depend on the CPU."""
        return self.twin_of(self.prepare(progress), progress)

    def twin_of(self, model: PreparedModel, progress: Progress) -> PreparedModel | None:
        """``model`` computing in fp32 (derived once, cached), or None when its kernels do not depend on the CPU."""
        primary = model == self.prepared
        if primary and self.twin_model is not None:
            return self.twin_model
        if not host_dependent(accuracy_levels(model.path)):
            return None
        twin = derive_variant(model, TWIN_LEVEL, self.store, progress, twin=True)
        if primary:
            self.twin_model = twin
            progress(f"greedy checks also judge the fp32-compute twin (accuracy_level {TWIN_LEVEL}): {twin.path}")
            self.write_provenance()
        return twin

    def prepare_precision(self, precision: str, progress: Progress) -> PreparedModel:
        """Build (or find) the model at another precision, for the precision comparison."""
        primary = self.prepare(progress)
        if precision == self.plan.precision or not self.plan.needs_build:
            return primary
        plan = make_plan(self.source, precision, self.settings.ep, self.builder,
                         HashMemo(self.settings.cache_dir / "hashes.json"))
        return self._at_accuracy_level(prepare(plan, self.store, self.builder, self.claim_run_dir(), progress),
                                       progress)

    def prepare_ab(self, progress: Progress) -> PreparedModel | None:
        """The --harness-ab baseline, built (or found) like the model under test, at its accuracy level."""
        if self.ab_source is None or self.ab_model is not None:
            return self.ab_model
        plan = make_plan(self.ab_source, self.settings.precision, self.settings.ep, self.builder,
                         HashMemo(self.settings.cache_dir / "hashes.json"))
        built = prepare(plan, self.store, self.builder, self.claim_run_dir(), progress)
        self.ab_model = self._at_accuracy_level(built, progress)
        self.write_provenance()
        return self.ab_model

    def reference_folder(self, progress: Progress) -> Path | None:
        """The reference model as a Hugging Face folder (a GGUF is converted once, cached)."""
        return self._hf_folder(self.reference_source, progress)

    def base_folder(self, progress: Progress) -> Path | None:
        """The base model (--base-model, or the base an adapter names) as a Hugging Face folder, for fine-tune
        retention (a GGUF base is converted once, cached); None without one."""
        return self._hf_folder(self.base_source, progress)

    def _hf_folder(self, source: ModelSource | None, progress: Progress) -> Path | None:
        """``source`` as the Hugging Face folder transformers reads: itself, its cached conversion (a GGUF), or the
        adapter merged into its base (the build's source)."""
        if source is None or source.kind is SourceKind.HF_FOLDER:
            return source.path if source else None
        if source.kind is SourceKind.ADAPTER:
            log = self.claim_run_dir() / f"merge-{source.name}.log"
            return merge_adapter(self.plan, self.store, log, progress).path
        log = self.claim_run_dir() / f"convert-{source.name}.log"
        return convert_source(self._reference_plan(source), self.store, log, progress).path

    def _reference_plan(self, reference: ModelSource) -> BuildPlan:
        """The plan whose conversion a GGUF reference is read from (the session's own, for its own source)."""
        return self.plan if reference == self.source else make_plan(
            reference, "fp32", self.settings.ep, self.builder, HashMemo(self.settings.cache_dir / "hashes.json"))

    def deploy(self, progress: Progress) -> Deployment | None:
        """Lay out the Foundry Local folder; a template that cannot be derived is recorded, so the
        template suite fails with it while the other suites still run."""
        if self.deployment is not None or self.deployment_error is not None:
            return self.deployment
        prepared = self.prepare(progress)
        name = f"{self.source.name}-{self.precision_label}"
        user_file = self.settings.inference_config
        if user_file is None and self.source.kind is SourceKind.FOUNDRY_FOLDER:
            user_file = self.source.path / INFERENCE_MODEL  # the file the user ships is the one to check
        try:
            if user_file is not None:
                document = load_user_document(user_file)
            else:
                document = build_document(prepared.path, name, self.settings.model_config)
        except TemplateError as exc:
            self.deployment_error = str(exc)
            progress(f"no Foundry Local folder: {exc}")
            return None
        self.deployment = write_deployment(prepared.path, self.run_dir / "foundry", name, document)
        progress(f"Foundry Local model folder: {self.deployment.folder}")
        self.write_provenance()
        return self.deployment

    def deploy_twin(self, progress: Progress) -> Deployment | None:
        """The fp32-compute twin laid out like the deployment folder (None without a twin or a deployment)."""
        deployment, twin = self.deploy(progress), self.twin(progress)
        if deployment is None or twin is None:
            return None
        return write_deployment(twin.path, self.run_dir / "foundry-fp32-compute", deployment.folder.name,
                                deployment.document)

    def provenance(self) -> dict[str, object]:
        prepared = self.prepared
        return {
            "model": str(self.source.path),
            "model_name": self.source.name,
            "source_kind": str(self.source.kind),
            "source_sha256": self.plan.source_hash,
            "default_model": self.source.is_default,
            "base_model": str(self.base_source.path) if self.base_source else None,
            "base_model_kind": str(self.base_source.kind) if self.base_source else None,
            "base_sha256": self.plan.base_hash or None,
            "merge_key": self.plan.merge_key or None,
            "merged_model": str(self.store.entry("hf", self.plan.merge_key)) if self.plan.merge_key else None,
            "precision": self.plan.precision if self.plan.needs_build else None,
            "builder": self.plan.builder if self.plan.needs_build else None,
            "builder_detail": self.builder.describe() if self.plan.needs_build else None,
            "builder_options": self.builder.options() if self.plan.needs_build else None,
            "ep": self.settings.ep,
            "profile": self.settings.profile,
            "built_model": str(prepared.path) if prepared else None,
            "cache_key": self.plan.key or None,
            "cache_hit": prepared.cache_hit if prepared else None,
            "accuracy_levels": {str(level): count for level, count in sorted(self.levels.items())},
            "accuracy_level_setting": self.settings.accuracy_level,
            "twin_model": str(self.twin_model.path) if self.twin_model else None,
            "ab_model": str(self.ab_model.path) if self.ab_model else None,
            "build_seconds": round(prepared.build_seconds, 2) if prepared else None,
            "foundry_local_folder": str(self.deployment.folder) if self.deployment else None,
            "budget": self.budget,
            "settings_from": dict(self.settings.origins),
            "versions": versions(REPORTED_PACKAGES),
            "machine": machine_fingerprint(),
        }

    def write_provenance(self) -> None:
        write_text_atomic(self.run_dir / "provenance.json", json.dumps(self.provenance(), indent=2))
