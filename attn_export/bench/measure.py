"""One module's row: eager and ONNX Runtime latency, FLOP rates, and where the time goes."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..onnx_export import export_to_onnx, input_names_for
from ..timing import Latency, time_side_by_side
from .flops import count_flops
from .gpu import gpu_functions
from .profile import profile_kernels
from .targets import BenchTarget, build_target

# The peak goal: from this many FLOPs up, a module's ONNX Runtime rate should reach this
# fraction of the measured matmul peak (smaller modules are dominated by per-call overhead).
TARGET_MIN_FLOPS = 100e6
TARGET_PEAK_FRACTION = 0.6


@dataclass
class BenchRow:
    name: str
    shapes: list[list[int]]
    flops: int
    eager: Latency
    ort: Latency
    ratio: float  # eager median / ORT median: > 1 means ONNX Runtime is faster
    eager_gflops: float
    ort_gflops: float
    ort_peak_fraction: float  # ORT GFLOP/s over the measured matmul peak
    extra: dict[str, Latency] = field(default_factory=dict)
    # --profile: ONNX Runtime kernel time per op type, ms per run (profiling adds overhead)
    ort_kernel_ms: dict[str, float] = field(default_factory=dict)


def misses_peak_goal(flops: float, gflops: float, peak_gflops: float) -> bool:
    return flops >= TARGET_MIN_FLOPS and gflops < TARGET_PEAK_FRACTION * peak_gflops


def gflops_at(flops: int, latency: Latency) -> float:
    return flops / (latency.median_ms * 1e-3) / 1e9


def bench_module(
    target: BenchTarget, threads: int, peak_gflops: float, gpu: bool = False, profile: bool = False
) -> BenchRow:
    """Time ``target`` in eager PyTorch and ONNX Runtime (and on the GPU with ``gpu``)."""
    from ..backends import OnnxRuntimeBackend

    name, module, shapes = build_target(target)
    inputs = tuple(torch.randn(s) for s in shapes)
    names = input_names_for(len(shapes))
    graph = export_to_onnx(module, inputs, names)
    torch.set_num_threads(threads)
    ort = OnnxRuntimeBackend(graph.model.SerializeToString(), threads=threads)
    feeds = {n: x.numpy() for n, x in zip(names, inputs)}

    def eager() -> None:
        with torch.inference_mode():
            module(*inputs)

    functions: dict[str, Callable[[], object]] = {"eager": eager, "ort": lambda: ort.run(feeds)}
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as workdir:
        if gpu:
            functions.update(gpu_functions(graph.model, feeds, Path(workdir)))
        latencies = time_side_by_side(functions)
        flops = count_flops(module, inputs)
        eager_lat, ort_lat = latencies.pop("eager"), latencies.pop("ort")
        ort_gflops = gflops_at(flops, ort_lat)
        # a module that misses the peak goal is always profiled: the row says where its time goes
        kernel_ms = (
            profile_kernels(graph.model.SerializeToString(), feeds, threads, Path(workdir))
            if profile or misses_peak_goal(flops, ort_gflops, peak_gflops)
            else {}
        )
    return BenchRow(
        name=name,
        shapes=[list(s) for s in shapes],
        flops=flops,
        eager=eager_lat,
        ort=ort_lat,
        ratio=eager_lat.median_ms / ort_lat.median_ms,
        eager_gflops=gflops_at(flops, eager_lat),
        ort_gflops=ort_gflops,
        ort_peak_fraction=ort_gflops / peak_gflops,
        extra=latencies,
        ort_kernel_ms=kernel_ms,
    )


def geometric_mean(values: Sequence[float]) -> float:
    """Of the positive, finite ``values``; NaN when there are none."""
    kept = [v for v in values if v > 0 and math.isfinite(v)]
    return float(math.exp(sum(math.log(v) for v in kept) / len(kept))) if kept else float("nan")
