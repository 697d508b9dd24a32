"""Benchmarks: PyTorch eager vs ONNX Runtime (and GPU backends where present), side by side.

- ``targets``: what to benchmark, built as export builds it
- ``flops``: matmul/conv FLOP counts and the machine's measured GEMM peak
- ``measure``: one module's row (latency, FLOP rates, the peak goal)
- ``profile``: ONNX Runtime's kernel time per op type
- ``gpu``: ONNX Runtime CUDA and TensorRT runners
- ``growth``, ``sweep``: FLOPs as the input grows, and their power-law terms
- ``plot``: the PNG chart
- ``run``: the command (table, summary, JSON)
"""

from __future__ import annotations

from .growth import flop_growth
from .measure import BenchRow, bench_module
from .plot import require_matplotlib
from .profile import describe_profile
from .run import BenchOptions, bench_command, run_bench
from .sweep import SWEEP_SIDES, SWEEP_TOKENS, sweep_module
from .targets import BenchTarget, build_target

__all__ = [
    "SWEEP_SIDES",
    "SWEEP_TOKENS",
    "BenchOptions",
    "BenchRow",
    "BenchTarget",
    "bench_command",
    "bench_module",
    "build_target",
    "describe_profile",
    "flop_growth",
    "require_matplotlib",
    "run_bench",
    "sweep_module",
]
