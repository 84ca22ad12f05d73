"""A machine yardstick: a fixed workload, run by the same engine beside every benchmark round, that says how fast
the machine was at that moment.

A timing compared between two runs mixes the model's speed with the machine's, which on a shared VM moves by more
than the 10% a gate looks for. The yardstick cannot be the model itself (a slower model would slow its own
yardstick and hide its regression), so it is a graph that never changes: eight 1024x1024 int4 MatMulNBits layers
(block 32, accuracy level 4), the kernel and the memory-bound matrix-vector shape of a decode step, built in memory
from a fixed seed and run by onnxruntime, the engine under onnxruntime-genai, on one thread: forty passes take about
7 ms on the CI machine kind, 1% of a benchmark round, with an interquartile range of 0.9% of the median (two
threads: 3.4%, the pool's wake-ups; measured over 40 timings). ``harness compare`` divides each run's median timing
by its median yardstick time (a rate: multiplies), machine-independent units, when both runs have them.
"""

from __future__ import annotations

import time
from typing import Any

SIZE = 1024  # the layers' K = N
LAYERS = 8
BLOCK = 32
PASSES = 40  # graph runs per timing
SEED = 0
METRIC = "yardstick_s"  # what the benchmarks record each round's timing as (the median, and a _rounds series)


class Yardstick:
    """The fixed workload, built on first use (about 50 ms) and timed with ``seconds()``."""

    def __init__(self) -> None:
        self._session: Any = None
        self._feed: dict[str, Any] = {}

    def _build(self) -> None:
        import numpy as np
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng(SEED)
        nodes, weights, name = [], [], "x"
        for layer in range(LAYERS):
            packed = rng.integers(0, 256, size=(SIZE, SIZE // BLOCK, BLOCK // 2), dtype=np.uint8)
            scales = (rng.random(SIZE * SIZE // BLOCK, dtype=np.float32) * 0.02).astype(np.float32)
            weights += [numpy_helper.from_array(packed, f"w{layer}"), numpy_helper.from_array(scales, f"s{layer}")]
            nodes.append(helper.make_node("MatMulNBits", [name, f"w{layer}", f"s{layer}"], [f"y{layer}"],
                                          domain="com.microsoft", K=SIZE, N=SIZE, bits=4, block_size=BLOCK,
                                          accuracy_level=4))
            name = f"y{layer}"
        vector = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SIZE])
        graph = helper.make_graph(nodes, "yardstick", [vector],
                                  [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, SIZE])], weights)
        model = helper.make_model(graph, ir_version=10,
                                  opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # no pool: no wake-up jitter, and no thread spinning into the next round
        self._session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])
        self._feed = {"x": rng.random((1, SIZE), dtype=np.float32)}
        self._session.run(None, self._feed)  # warm

    def seconds(self) -> float:
        """One timing of the workload (PASSES runs of the graph)."""
        if self._session is None:
            self._build()
        started = time.perf_counter()
        for _ in range(PASSES):
            self._session.run(None, self._feed)
        return time.perf_counter() - started
