"""From a model source to an onnxruntime-genai folder the suites can load, through the cache.

``plan`` is cheap (hashes are memoized) and runs at session start for the report header;
``prepare`` does the slow part (GGUF conversion, an adapter's merge, Olive / model builder) only on a cache miss.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from harness.preparation.builders import Builder
from harness.preparation.buildlog import Progress, fail, run_logged
from harness.preparation.cache import CacheResult, ModelStore
from harness.preparation.compute_paths import VARIANT_RECIPE, write_variant
from harness.preparation.hashing import HashMemo, combine, content_hash
from harness.preparation.sources import ModelSource, SourceKind
from harness.provenance import BUILD_PACKAGES, versions

# Bump when the way we convert or build changes, so old cache entries are not reused.
RECIPE_VERSION = "1"
CONVERT_PACKAGES = ("transformers", "torch", "gguf")
# Bump when the way an adapter is merged changes; the packages whose versions can change the merged weights.
MERGE_RECIPE = "1"
MERGE_PACKAGES = ("peft", "transformers", "torch", "safetensors")


@dataclass(frozen=True)
class BuildPlan:
    source: ModelSource
    source_hash: str
    precision: str
    builder: str
    ep: str
    key: str  # cache key of the built model ("" for a prebuilt ONNX source)
    convert_key: str  # cache key of the GGUF -> Hugging Face conversion (of an adapter's base; "" when not needed)
    base_hash: str = ""  # an adapter's base model's content hash ("" for other sources)
    merge_key: str = ""  # cache key of the adapter merged into its base ("" for other sources)

    @property
    def needs_build(self) -> bool:
        return self.source.kind.needs_build


@dataclass(frozen=True)
class PreparedModel:
    path: Path  # the onnxruntime-genai folder to load
    plan: BuildPlan
    cache_hit: bool
    build_seconds: float
    log: Path | None
    derived_key: str = ""  # the cache key of a variant derived from the built model (another accuracy level)
    twin_of: Path | None = None  # on an fp32-compute twin: the model it is the twin of

    @property
    def identity(self) -> str:
        """What identifies this folder's content: its cache key, or the prebuilt source's hash."""
        return self.derived_key or self.plan.key or self.plan.source_hash


def make_plan(source: ModelSource, precision: str, ep: str, builder: Builder, memo: HashMemo) -> BuildPlan:
    source_hash = content_hash(source.path, memo)
    adapter = source.kind is SourceKind.ADAPTER
    if adapter and source.base is None:
        raise ValueError(f"the adapter {source.path} has no base model (sources.with_base)")
    base_hash = content_hash(source.weights.path, memo) if adapter else ""
    convert_key = merge_key = ""
    if source.weights.kind is SourceKind.GGUF:
        convert_key = combine([("gguf", base_hash or source_hash), ("recipe", RECIPE_VERSION),
                               *versions(CONVERT_PACKAGES).items()])
    if adapter:
        merge_key = combine([("adapter", source_hash), ("base", base_hash), ("base_conversion", convert_key),
                             ("recipe", MERGE_RECIPE), *versions(MERGE_PACKAGES).items()])
    key = ""
    if source.kind.needs_build:
        key = combine([
            ("source", source_hash), ("precision", precision), ("ep", ep),
            ("builder", builder.name), ("recipe", RECIPE_VERSION),
            *(("option:" + k, v) for k, v in builder.options().items()),
            *versions(BUILD_PACKAGES).items(),
            *([("merge", merge_key)] if adapter else []),  # the other sources' keys stay as they were
        ])
    return BuildPlan(source, source_hash, precision, builder.name, ep, key, convert_key, base_hash, merge_key)


def cached_path(plan: BuildPlan, store: ModelStore) -> Path | None:
    """The built model folder if the cache already has it (or the source itself if prebuilt)."""
    if not plan.needs_build:
        return plan.source.path
    return store.lookup("onnx", plan.key)


def prepare(plan: BuildPlan, store: ModelStore, builder: Builder, logs: Path,
            progress: Progress) -> PreparedModel:
    if not plan.needs_build:
        return PreparedModel(plan.source.path, plan, cache_hit=True, build_seconds=0.0, log=None)
    log = logs / f"build-{plan.precision}-{plan.key[:12]}.log"

    def build(out: Path) -> None:
        hf_folder = plan.source.path
        if plan.source.kind is SourceKind.ADAPTER:  # only on a miss, as the conversion
            hf_folder = merge_adapter(plan, store, log, progress).path
        elif plan.source.kind is SourceKind.GGUF:  # only on a miss: a cached ONNX model needs no conversion
            hf_folder = convert_source(plan, store, log, progress).path
        progress(f"building {plan.precision} model with {builder.describe()} (log: {log})")
        # Named after the entry, so the store clears it too if this build is killed.
        with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix=f"onnx-{plan.key}-work-") as work:
            builder.build(hf_folder, out, plan.precision, plan.ep, Path(work), log, progress)

    merged = {"base": str(plan.source.weights.path), "base_sha256": plan.base_hash,
              "merge_key": plan.merge_key} if plan.merge_key else {}
    metadata = {"source": str(plan.source.path), "source_sha256": plan.source_hash, **merged,
                "precision": plan.precision, "builder": builder.name, "builder_detail": builder.describe(),
                "builder_options": builder.options(), "ep": plan.ep, "versions": versions(BUILD_PACKAGES)}
    result = store.get_or_build("onnx", plan.key, build, metadata, space_needed=size_of(plan.source.weights.path))
    if not result.hit:
        progress(f"built {plan.precision} model in {result.seconds:.1f} s -> {result.path}")
    return PreparedModel(result.path, plan, result.hit, result.seconds,
                         log if log.exists() else None)


def size_of(path: Path) -> int:
    """Bytes in a file or folder: the free space a build from it asks for before it starts. A yardstick, not
    the exact need: the default model's GGUF conversion wrote 5.4x its 100 MB source (541 MB), its int4 build
    a sixth of its 538 MB source; a disk short of this is nearly full either way."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def derive_variant(model: PreparedModel, level: int, store: ModelStore, progress: Progress,
                   twin: bool = False) -> PreparedModel:
    """The model with every MatMulNBits node at accuracy ``level``: weights linked, graphs rewritten,
    cached next to the model (no rebuild)."""
    key = combine([("base", model.identity), ("accuracy_level", str(level)), ("recipe", VARIANT_RECIPE)])

    def derive(out: Path) -> None:
        write_variant(model.path, out, level)

    metadata = {"derived_from": str(model.path), "accuracy_level": level}
    result = store.get_or_build("onnx", key, derive, metadata)
    if not result.hit:
        what = "fp32-compute twin" if twin else f"accuracy_level {level} variant"
        progress(f"derived the {what} in {result.seconds:.1f} s (weights shared) -> {result.path}")
    return replace(model, path=result.path, derived_key=key, twin_of=model.path if twin else None)


def convert_source(plan: BuildPlan, store: ModelStore, log: Path, progress: Progress) -> CacheResult:
    """The GGUF source (or an adapter's GGUF base) as a Hugging Face folder (converted once, cached)."""
    gguf = plan.source.weights.path

    def convert(out: Path) -> None:
        progress(f"converting {gguf.name} to a Hugging Face folder")
        cmd = [sys.executable, "-m", "harness.preparation.convert", str(gguf), str(out)]
        code = run_logged(cmd, log, cwd=out, label="GGUF conversion", progress=progress)
        if code != 0:
            raise fail("GGUF conversion", log, code)

    metadata = {"gguf": str(gguf), "gguf_sha256": plan.base_hash or plan.source_hash}
    result = store.get_or_build("hf", plan.convert_key, convert, metadata, space_needed=size_of(gguf))
    if not result.hit:
        progress(f"converted in {result.seconds:.1f} s")
    return result


def merge_adapter(plan: BuildPlan, store: ModelStore, log: Path, progress: Progress) -> CacheResult:
    """The adapter merged into its base by peft (``python -m harness.preparation.merge``), as a Hugging Face folder:
    merged once, cached by both hashes (a GGUF base is converted first, cached too)."""
    adapter, base = plan.source.path, plan.source.weights

    def merge(out: Path) -> None:
        base_folder = base.path
        if base.kind is SourceKind.GGUF:
            base_folder = convert_source(plan, store, log, progress).path
        progress(f"merging the adapter {adapter.name} into {base.path.name} with peft")
        cmd = [sys.executable, "-m", "harness.preparation.merge", str(base_folder), str(adapter), str(out)]
        code = run_logged(cmd, log, cwd=out, label="adapter merge", progress=progress,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if code != 0:
            raise fail("adapter merge", log, code)

    metadata = {"adapter": str(adapter), "adapter_sha256": plan.source_hash, "base": str(base.path),
                "base_sha256": plan.base_hash, "base_conversion": plan.convert_key or None,
                "versions": versions(MERGE_PACKAGES)}
    result = store.get_or_build("hf", plan.merge_key, merge, metadata, space_needed=size_of(base.path))
    if not result.hit:
        progress(f"merged in {result.seconds:.1f} s -> {result.path}")
    return result
