"""FLOPs: a module's matmul/conv count, and the machine's GEMM rate to judge them against."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

PEAK_GEMM_SIZE = 2048  # a square fp32 GEMM large enough to run at the machine's full rate
PEAK_WARM_UP_CALLS = 2
PEAK_TIMED_CALLS = 5  # the best of these: the rate the machine can reach, not its average
# The GEMM graph's versions: MatMul is the same in every opset; ONNX Runtime runs these.
PEAK_GRAPH_OPSET = 17
PEAK_GRAPH_IR_VERSION = 8


def count_flops(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Matmul/conv FLOPs of one forward (``torch.utils.flop_counter``; elementwise ops are not
    counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return int(counter.get_total_flops())


def _gemm_graph(size: int) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", PEAK_GRAPH_OPSET)],
        ir_version=PEAK_GRAPH_IR_VERSION,
    )
    return model.SerializeToString()


def _best_seconds(fn: Callable[[], object]) -> float:
    for _ in range(PEAK_WARM_UP_CALLS):
        fn()
    best = math.inf
    for _ in range(PEAK_TIMED_CALLS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_gflops(threads: int, size: int = PEAK_GEMM_SIZE) -> dict[str, float]:
    """The machine's fp32 GEMM rate, measured now with the same thread count.

    Both PyTorch's GEMM and ONNX Runtime's MatMul (MLAS) are timed; the faster of the two is
    the peak, since a module's ONNX Runtime time is judged against what the machine can do.
    """
    from ..backends import OnnxRuntimeBackend

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    ort = OnnxRuntimeBackend(_gemm_graph(size), threads=threads)
    feeds = {"a": a.numpy(), "b": b.numpy()}
    runners: dict[str, Callable[[], object]] = {
        "torch": lambda: a @ b,
        "onnxruntime": lambda: ort.run(feeds),
    }
    rates = {label: 2 * size**3 / _best_seconds(fn) / 1e9 for label, fn in runners.items()}
    rates["peak"] = max(rates.values())
    return rates
