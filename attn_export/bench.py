"""Benchmarks: PyTorch eager vs ONNX Runtime (and GPU backends where present), side by side.

Absolute times on a shared 2-core machine are noisy; the figures that count are ratios
measured in the same run, with eager and ONNX Runtime timed in alternating rounds so that
drift in the machine's load hits both alike.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import modules

from .atomic import atomic_write
from .errors import UsageError
from .export import export_to_onnx, input_names_for

ROUNDS = 5  # alternating eager/ORT rounds
MIN_ROUND_SECONDS = 0.05
SETTLE_SECONDS = 0.05


@dataclass
class Latency:
    median_ms: float
    p90_ms: float
    samples: int


@dataclass
class BenchRow:
    name: str
    shapes: List[List[int]]
    flops: int
    eager: Latency
    ort: Latency
    ratio: float  # eager median / ORT median: > 1 means ONNX Runtime is faster
    eager_gflops: float
    ort_gflops: float
    ort_peak_fraction: float  # ORT GFLOP/s over the measured matmul peak
    extra: Dict[str, Latency] = field(default_factory=dict)


def count_flops(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Matmul/conv FLOPs of one forward (``torch.utils.flop_counter``; elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return int(counter.get_total_flops())


def matmul_peak_gflops(threads: int, size: int = 2048) -> Dict[str, float]:
    """The machine's fp32 GEMM rate, measured now with the same thread count.

    Both PyTorch's GEMM and ONNX Runtime's MatMul (MLAS) are timed; the faster of the two is
    the peak, since a module's ONNX Runtime time is judged against what the machine can do.
    """
    from onnx import TensorProto, helper

    from .backends import OnnxRuntimeBackend

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    ort = OnnxRuntimeBackend(model.SerializeToString(), threads=threads)
    feeds = {"a": a.numpy(), "b": b.numpy()}
    rates = {}
    for label, fn in (("torch", lambda: a @ b), ("onnxruntime", lambda: ort.run(feeds))):
        for _ in range(2):
            fn()
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        rates[label] = 2 * size**3 / best / 1e9
    rates["peak"] = max(rates.values())
    return rates


def _time_round(fn: Callable[[], object]) -> List[float]:
    samples: List[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < MIN_ROUND_SECONDS or len(samples) < 3:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def time_side_by_side(functions: Dict[str, Callable[[], object]], rounds: int = ROUNDS) -> Dict[str, Latency]:
    """Warm each function up, then time them in alternating rounds."""
    for fn in functions.values():
        for _ in range(3):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in functions}
    for _ in range(rounds):
        for key, fn in functions.items():
            # Both runtimes keep their worker threads spinning for a while after a call; left
            # alone, ORT's spinning threads would steal the cores from PyTorch's next round and
            # the reverse. A pause and two untimed calls start each round from steady state.
            time.sleep(SETTLE_SECONDS)
            fn()
            fn()
            samples[key].extend(_time_round(fn))
    return {
        k: Latency(float(np.median(v) * 1e3), float(np.percentile(v, 90) * 1e3), len(v)) for k, v in samples.items()
    }


def bench_module(name: str, threads: int, peak_gflops: float, shapes: Optional[Sequence[Tuple[int, ...]]] = None,
                 gpu: bool = False) -> BenchRow:
    from .backends import OnnxRuntimeBackend

    spec = modules.get_spec(name)
    shapes = [tuple(s) for s in (shapes or spec.shapes)]
    torch.manual_seed(0)
    module = spec.create().eval()
    inputs = tuple(torch.randn(s) for s in shapes)
    names = input_names_for(len(shapes))
    graph = export_to_onnx(module, inputs, names)
    torch.set_num_threads(threads)
    ort = OnnxRuntimeBackend(graph.model.SerializeToString(), threads=threads)
    feeds = {n: x.numpy() for n, x in zip(names, inputs)}

    def eager() -> None:
        with torch.inference_mode():
            module(*inputs)

    functions: Dict[str, Callable[[], object]] = {"eager": eager, "ort": lambda: ort.run(feeds)}
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as workdir:
        if gpu:
            functions.update(_gpu_functions(graph.model, feeds, Path(workdir)))
        latencies = time_side_by_side(functions)
    flops = count_flops(module, inputs)
    eager_lat, ort_lat = latencies.pop("eager"), latencies.pop("ort")
    ort_gflops = flops / (ort_lat.median_ms * 1e-3) / 1e9
    return BenchRow(
        name=name,
        shapes=[list(s) for s in shapes],
        flops=flops,
        eager=eager_lat,
        ort=ort_lat,
        ratio=eager_lat.median_ms / ort_lat.median_ms,
        eager_gflops=flops / (eager_lat.median_ms * 1e-3) / 1e9,
        ort_gflops=ort_gflops,
        ort_peak_fraction=ort_gflops / peak_gflops,
        extra=latencies,
    )


def _gpu_functions(model, feeds, workdir: Path) -> Dict[str, Callable[[], object]]:
    """ONNX Runtime CUDA and TensorRT fp32/fp16 runners, for the backends this host has."""
    import onnxruntime

    from .backends import OnnxRuntimeBackend
    from .backends import tensorrt as trt_backend

    functions: Dict[str, Callable[[], object]] = {}
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        cuda = OnnxRuntimeBackend(model.SerializeToString(), provider="CUDAExecutionProvider")
        functions["ort-cuda"] = lambda: cuda.run(feeds)
    if trt_backend.tensorrt_unavailable_reason() is None:
        from .fp16 import convert_to_fp16

        graphs = {"fp32": model, "fp16": convert_to_fp16(model, dict(feeds)).model}
        for precision, graph in graphs.items():
            onnx_path = workdir / f"{precision}.onnx"
            onnx_path.write_bytes(graph.SerializeToString())
            engine_path = workdir / f"{precision}.engine"
            trt_backend.build_engine(onnx_path, engine_path, precision=precision, timing_cache=workdir / "timing.cache")
            engine = trt_backend.TensorRTBackend(engine_path, precision=precision)
            functions[f"trt-{precision}"] = lambda e=engine: e.run(feeds)
    return functions


def geometric_mean(values: Sequence[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")


# Input sizes for --sweep: tokens for (B, N, C) modules, side for (B, C, H, W) ones.
SWEEP_TOKENS = (49, 196, 784, 3136)
SWEEP_SIDES = (7, 14, 28, 56)


def sweep_module(name: str) -> Dict[str, object]:
    """FLOPs and eager latency as the input grows; the FLOP exponent shows quadratic modules."""
    spec = modules.get_spec(name)
    base = spec.shapes[0]
    points = []
    channels_last = len(base) == 4 and base[1] == base[2] != base[3]  # (B, H, W, C) modules
    for size in SWEEP_TOKENS if len(base) == 3 else SWEEP_SIDES if len(base) == 4 else ():
        if len(base) == 3:
            shapes = [(s[0], size, s[2]) for s in spec.shapes]
        elif channels_last:
            shapes = [(s[0], size, size, s[3]) for s in spec.shapes]
        else:
            shapes = [(s[0], s[1], size, size) for s in spec.shapes]
        torch.manual_seed(0)
        module = spec.create().eval()
        inputs = tuple(torch.randn(s) for s in shapes)
        try:
            flops = count_flops(module, inputs)
        except Exception:  # modules with a fixed spatial size (constructor H, W, n, ...)
            continue
        latency = time_side_by_side({"eager": lambda m=module, xs=inputs: m(*xs)}, rounds=2)["eager"]
        points.append({"size": size, "shape": list(shapes[0]), "flops": flops, "eager_ms": latency.median_ms})
    exponent = None
    if len(points) >= 2 and points[0]["flops"] > 0:
        # growth of FLOPs against the number of positions (tokens, or H*W)
        positions = [p["size"] if len(base) == 3 else p["size"] ** 2 for p in points]
        exponent = float(np.polyfit(np.log(positions), np.log([max(p["flops"], 1) for p in points]), 1)[0])
    return {"name": name, "points": points, "flop_exponent": exponent,
            "growth": None if exponent is None else ("quadratic" if exponent > 1.5 else "linear")}


def plot(rows: Sequence[BenchRow], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'attn-export[bench]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r.ratio)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(4, 0.28 * len(rows) + 1.5)), sharey=True)
    y = np.arange(len(rows))
    labels = [r.name for r in rows]
    colours = ["tab:red" if r.ratio < 1 else "tab:green" for r in rows]
    left.barh(y, [r.ratio for r in rows], color=colours)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_yticks(y, labels)
    left.set_xlabel("speed-up of ONNX Runtime over PyTorch eager (x)")
    left.set_title(f"ORT vs eager, geometric mean {geometric_mean([r.ratio for r in rows]):.2f}x")
    right.barh(y, [100 * r.ort_peak_fraction for r in rows],
               color=["tab:blue" if r.flops >= 100e6 else "lightgrey" for r in rows])
    right.axvline(60, color="black", linestyle="--", linewidth=1)
    right.set_xlabel("ONNX Runtime GFLOP/s as % of the measured matmul peak")
    right.set_title("closeness to the matmul peak (grey: < 100 MFLOP, no target)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_figure(fig, path: Path, dpi: int) -> None:
    """Render a matplotlib figure to PNG in memory, then write it atomically."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def run_bench(names: Sequence[str], threads: int, json_path: Optional[Path], plot_path: Optional[Path],
              sweep: bool, report: Callable[[str], None] = print, progress: bool = True) -> Dict[str, object]:
    gpu = torch.cuda.is_available()
    rates = matmul_peak_gflops(threads)
    peak = rates["peak"]
    report(f"threads {threads} (torch.set_num_threads and ORT intra_op_num_threads); matmul peak {peak:.0f} GFLOP/s "
           f"(2048x2048 fp32 GEMM measured now: torch {rates['torch']:.0f}, onnxruntime {rates['onnxruntime']:.0f}); "
           "FLOPs = matmul/conv FLOPs of the PyTorch forward")
    report(f"{'module':<28}{'MFLOP':>9}{'eager ms':>10}{'p90':>8}{'ORT ms':>9}{'p90':>8}{'ratio':>8}{'%peak':>7}")
    rows: List[BenchRow] = []
    for name in with_progress(names, "bench", progress):
        row = bench_module(name, threads, peak, gpu=gpu)
        rows.append(row)
        gpu_text = "".join(f"  {k} {v.median_ms:.3f} ms ({row.eager.median_ms / v.median_ms:.1f}x)" for k, v in row.extra.items())
        report(f"{row.name:<28}{row.flops / 1e6:>9.1f}{row.eager.median_ms:>10.3f}{row.eager.p90_ms:>8.3f}"
               f"{row.ort.median_ms:>9.3f}{row.ort.p90_ms:>8.3f}{row.ratio:>7.2f}x{100 * row.ort_peak_fraction:>6.0f}%{gpu_text}")
    ratios = [r.ratio for r in rows]
    big = [r for r in rows if r.flops >= 100e6]
    summary = {
        "threads": threads,
        "matmul_peak_gflops": peak,
        "matmul_gflops_by_runtime": rates,
        "geomean_ratio": geometric_mean(ratios),
        "min_ratio": min(ratios) if ratios else None,
        "below_1x": [r.name for r in rows if r.ratio < 1.0],
        "big_modules_below_60pct_peak": [r.name for r in big if r.ort_peak_fraction < 0.6],
    }
    report(f"geometric mean ORT/eager ratio {summary['geomean_ratio']:.2f}x over {len(rows)} modules; "
           f"min {summary['min_ratio']:.2f}x; below 1.0x: {', '.join(summary['below_1x']) or 'none'}")
    if big:
        report(f"modules >= 100 MFLOP below 60% of peak: {', '.join(summary['big_modules_below_60pct_peak']) or 'none'}")
    result: Dict[str, object] = {"summary": summary, "rows": [asdict(r) for r in rows]}
    if sweep:
        sweeps = [sweep_module(n) for n in with_progress(names, "sweep", progress)]
        for entry in sweeps:
            if entry["flop_exponent"] is not None:
                report(f"sweep {entry['name']:<26} FLOPs ~ positions^{entry['flop_exponent']:.2f} ({entry['growth']})")
        result["sweep"] = sweeps
    if json_path:
        atomic_write(json_path, json.dumps(result, indent=2) + "\n")
    if plot_path:
        plot(rows, plot_path)
    return result


def with_progress(items: Sequence[str], label: str, enabled: bool):
    """Yield ``items`` under a rich progress bar (when ``enabled``: a terminal is watching)."""
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            bar.update(task, description=f"{label} {item}")
            yield item
            bar.advance(task)
