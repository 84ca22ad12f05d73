"""Compute paths of a quantized model on CPU, and the fp32-compute twin that keeps verdicts host-independent.

The builders' int4 and int8 models compute their ``MatMulNBits`` nodes at ``accuracy_level`` 4:
activations are quantized to int8, and onnxruntime picks that kernel by instruction set (AVX2,
AVX-512, VNNI, AMX). The same model then gives different logits on different CPUs: measured on the
default model, up to 1.07 (max over the vocabulary, per step) between an AVX-512 VNNI host and the
same host emulating an AVX2-only EPYC (``qemu-x86_64 -cpu EPYC-Milan``). At ``accuracy_level`` 1
(fp32 compute) the two hosts differed by at most 7e-5, and level 0 gave bit-identical logits to
level 1 on both, so the twin uses 1, the level whose meaning ("fp32") is explicit.

A variant at another accuracy level is derived, not rebuilt: the weights are hard-linked (copied
where the file system cannot link) and only the ``.onnx`` graphs that hold ``MatMulNBits`` nodes are
rewritten. onnxruntime rejects symlinked external data, and ``onnx.load`` refuses external data
with several hard links, so the graph is read without its external data.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import SourceError
from harness.fsutil import link_or_copy

MATMUL_NBITS = "MatMulNBits"
ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # unset, fp32, fp16, bf16, int8 (onnxruntime's MatMulNBits attribute)
# Levels whose CPU kernel computes in fp32: measured host-independent to 7e-5 (see the module docstring).
HOST_INDEPENDENT_LEVELS = frozenset({0, 1})
TWIN_LEVEL = 1
LEVEL_NAMES = {0: "unset (fp32 compute)", 1: "fp32 compute", 2: "fp16 compute", 3: "bf16 compute",
               4: "int8 activations"}
VARIANT_RECIPE = "1"  # bump when the rewrite changes


def graph_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.onnx") if p.is_file())


class DamagedModelFile(SourceError):
    """An ONNX file that does not decode, or its weights file missing or short; ``problem`` is the line without its
    fix, for a caller that knows a better one (a cached build is deleted, not rebuilt by hand)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}; rebuild the model or copy the file again")
        self.problem = problem


def load_graph(path: Path) -> Any:
    """An ONNX file's graph without its weights, checked: a file that is not ONNX, or external data missing or
    shorter than the graph reads, is a one-line SourceError (onnxruntime would fail only at the first load)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except (DecodeError, ValueError, OSError) as exc:
        raise DamagedModelFile(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    needed: dict[str, int] = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            fields = {entry.key: entry.value for entry in tensor.external_data}
            end = int(fields.get("offset", 0) or 0) + int(fields.get("length", 0) or 0)
            needed[fields.get("location", "")] = max(needed.get(fields.get("location", ""), 0), end)
    for location, end in needed.items():
        data = path.parent / location
        size = data.stat().st_size if data.is_file() else None
        if size is None or size < end:
            state = "is missing" if size is None else f"holds {size:,} bytes where the graph reads {end:,}"
            raise DamagedModelFile(f"{path.name}'s weights file {data} {state}: it is truncated or was not copied")
    return graph


def accuracy_levels(folder: Path) -> Counter[int]:
    """How many MatMulNBits nodes compute at each accuracy level, over the folder's ONNX graphs. Read once per
    version of the files: a graph that holds its weights is parsed whole, and a session asks at start, for its
    header and once built."""
    stats = [(path.name, path.stat()) for path in sorted(folder.iterdir()) if path.is_file()]
    signature = tuple((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats)  # weights files included
    return Counter(_levels(tuple(graph_files(folder)), signature))


@functools.lru_cache(maxsize=16)
def _levels(files: tuple[Path, ...], signature: tuple[tuple[str, int, int], ...]) -> dict[int, int]:
    levels: Counter[int] = Counter()
    for path in files:
        for node in load_graph(path).node:
            if node.op_type == MATMUL_NBITS:
                level = next((a.i for a in node.attribute if a.name == "accuracy_level"), 0)
                levels[int(level)] += 1
    return dict(levels)


def host_dependent(levels: Mapping[int, int]) -> bool:
    """True when some MatMulNBits node computes with a kernel the CPU's instruction set chooses."""
    return any(level not in HOST_INDEPENDENT_LEVELS for level in levels)


def describe_levels(levels: Mapping[int, int]) -> str:
    if not levels:
        return "no MatMulNBits nodes (unquantized: one compute path on every CPU)"
    return ", ".join(f"accuracy_level {level} ({LEVEL_NAMES.get(level, '?')}) x{count}"
                     for level, count in sorted(levels.items()))


def write_variant(source: Path, out: Path, level: int) -> int:
    """Write into ``out`` the model at ``source`` with every MatMulNBits node at ``level``.

    Returns the number of nodes rewritten. Every other file is linked (or copied), hidden files skipped.
    """
    import onnx

    rewritten = 0
    for item in sorted(source.iterdir()):
        if not item.is_file() or item.name.startswith("."):
            continue
        if item.suffix != ".onnx":
            link_or_copy(item, out / item.name)
            continue
        model = onnx.load(str(item), load_external_data=False)
        nodes = [node for node in model.graph.node if node.op_type == MATMUL_NBITS]
        if not nodes:
            link_or_copy(item, out / item.name)
            continue
        for node in nodes:
            attribute = next((a for a in node.attribute if a.name == "accuracy_level"), None)
            if attribute is None:
                node.attribute.append(onnx.helper.make_attribute("accuracy_level", level))
            else:
                attribute.i = level
        rewritten += len(nodes)
        onnx.save(model, str(out / item.name))  # external data stays where the graph points: the linked file
    return rewritten
