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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .backends.base import ort_session
from .errors import UsageError
from .onnx_export import export_to_onnx, input_names_for

ROUNDS = 5  # alternating eager/ORT rounds
MIN_ROUND_SECONDS = 0.05
SETTLE_SECONDS = 0.05
# The goal for the bigger modules: >= 60% of the measured matmul peak from 100 MFLOP up.
TARGET_MIN_FLOPS = 100e6
TARGET_PEAK_FRACTION = 0.6


@dataclass
class Latency:
    median_ms: float
    p90_ms: float
    samples: int


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


def count_flops(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Matmul/conv FLOPs of one forward (``torch.utils.flop_counter``; elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return int(counter.get_total_flops())


def matmul_peak_gflops(threads: int, size: int = 2048) -> dict[str, float]:
    """The machine's fp32 GEMM rate, measured now with the same thread count.

    Both PyTorch's GEMM and ONNX Runtime's MatMul (MLAS) are timed; the faster of the two is
    the peak, since a module's ONNX Runtime time is judged against what the machine can do.
    """
    from onnx import TensorProto, helper

    from .backends import OnnxRuntimeBackend

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
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


def _time_round(fn: Callable[[], object]) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < MIN_ROUND_SECONDS or len(samples) < 3:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def time_side_by_side(
    functions: dict[str, Callable[[], object]], rounds: int = ROUNDS
) -> dict[str, Latency]:
    """Warm each function up, then time them in alternating rounds."""
    for fn in functions.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in functions}
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
        k: Latency(float(np.median(v) * 1e3), float(np.percentile(v, 90) * 1e3), len(v))
        for k, v in samples.items()
    }


@dataclass
class BenchTarget:
    """What to benchmark: a registry name or an import path, as the export command takes them."""

    name: str
    shapes: Sequence[tuple[int, ...]] = ()  # empty: the registry defaults
    kwargs: dict[str, object] = field(default_factory=dict)
    weights: Path | None = None


def build_target(target: BenchTarget) -> tuple[str, torch.nn.Module, list[tuple[int, ...]]]:
    """The module and its input shapes, built exactly as `attn-export NAME` builds them (seed 0)."""
    from .options import ExportOptions
    from .pipeline import build

    built = build(
        target.name,
        ExportOptions(
            shapes=list(target.shapes), kwargs=dict(target.kwargs), weights=target.weights
        ),
    )
    return built.name, built.module, built.shapes


def bench_module(
    target: BenchTarget, threads: int, peak_gflops: float, gpu: bool = False, profile: bool = False
) -> BenchRow:
    from .backends import OnnxRuntimeBackend

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
            functions.update(_gpu_functions(graph.model, feeds, Path(workdir)))
        latencies = time_side_by_side(functions)
        flops = count_flops(module, inputs)
        eager_lat, ort_lat = latencies.pop("eager"), latencies.pop("ort")
        ort_gflops = flops / (ort_lat.median_ms * 1e-3) / 1e9
        # a module that misses the peak goal is always profiled: the row says where its time goes
        misses = flops >= TARGET_MIN_FLOPS and ort_gflops < TARGET_PEAK_FRACTION * peak_gflops
        kernel_ms = (
            profile_kernels(graph.model.SerializeToString(), feeds, threads, Path(workdir))
            if profile or misses
            else {}
        )
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
        ort_kernel_ms=kernel_ms,
    )


# Op types whose kernels do the counted (matmul/conv) FLOPs.
GEMM_OPS = frozenset(
    {"MatMul", "FusedMatMul", "Gemm", "Conv", "FusedConv", "ConvTranspose", "FusedGemm"}
)


def profile_kernels(
    model: bytes, feeds: dict[str, np.ndarray], threads: int, workdir: Path, runs: int = 50
) -> dict[str, float]:
    """ONNX Runtime's own profiler: kernel time per op type, in ms per run, largest first.

    Shows where a module's time goes when it runs far from the matmul peak (a Softmax or a
    Gather that costs as much as the GEMMs). The profiler's per-node overhead inflates
    small kernels, so read the shares, not the absolute times.
    """
    session = ort_session(model, threads=threads, profile_prefix=str(workdir / "ort-profile"))
    warm_up = 5
    for _ in range(warm_up + runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    # count only the kernels of the timed runs: those from the first run after the warm-up on
    run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    assert len(run_starts) == warm_up + runs, (
        f"expected {warm_up + runs} model_run events, got {len(run_starts)}"
    )
    start_us = run_starts[warm_up]
    totals: dict[str, float] = {}
    for event in events:
        if (
            event.get("cat") == "Node"
            and event["name"].endswith("_kernel_time")
            and event["ts"] >= start_us
        ):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1e3 / runs
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def describe_profile(kernel_ms: dict[str, float], top: int = 6) -> str:
    """One line: the op types' shares of kernel time, and the share of the GEMM-class kernels."""
    total = sum(kernel_ms.values())
    if total <= 0:
        return "no kernel events"
    shares = [f"{op} {100 * ms / total:.0f}%" for op, ms in list(kernel_ms.items())[:top]]
    gemm = sum(ms for op, ms in kernel_ms.items() if op in GEMM_OPS)
    return f"kernels {total:.3f} ms/run: {', '.join(shares)}; matmul/conv kernels {100 * gemm / total:.0f}% of kernel time"


def _gpu_functions(model, feeds, workdir: Path) -> dict[str, Callable[[], object]]:
    """ONNX Runtime CUDA and TensorRT fp32/fp16 runners, for the backends this host has."""
    import onnxruntime

    from .backends import OnnxRuntimeBackend
    from .backends import tensorrt as trt_backend

    functions: dict[str, Callable[[], object]] = {}
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
            trt_backend.build_engine(
                onnx_path, engine_path, precision=precision, timing_cache=workdir / "timing.cache"
            )
            engine = trt_backend.TensorRTBackend(engine_path, precision=precision)
            functions[f"trt-{precision}"] = lambda e=engine: e.run(feeds)
    return functions


def geometric_mean(values: Sequence[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return (
        float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")
    )


# Input sizes for --sweep: tokens for (B, N, C) modules, side for (B, C, H, W) ones.
# The same position counts both ways (sides squared); five sizes fix five growth terms. 42 rather
# than 21 keeps every side even, for the modules that downsample by 2.
SWEEP_TOKENS = (49, 196, 784, 1764, 3136)
SWEEP_SIDES = (7, 14, 28, 42, 56)


def sweep_module(target: str | BenchTarget) -> dict[str, object]:
    """FLOPs and eager latency as the input grows, and the FLOP count's growth law."""
    if isinstance(target, str):
        target = BenchTarget(target)
    name, module, base_shapes = build_target(target)
    base = base_shapes[0]
    points = []
    channels_last = len(base) == 4 and base[1] == base[2] != base[3]  # (B, H, W, C) modules
    for size in SWEEP_TOKENS if len(base) == 3 else SWEEP_SIDES if len(base) == 4 else ():
        if len(base) == 3:
            shapes = [(s[0], size, s[2]) for s in base_shapes]
        elif channels_last:
            shapes = [(s[0], size, size, s[3]) for s in base_shapes]
        else:
            shapes = [(s[0], s[1], size, size) for s in base_shapes]
        torch.manual_seed(0)
        inputs = tuple(torch.randn(s) for s in shapes)
        try:
            flops = count_flops(module, inputs)
        except Exception:  # modules with a fixed spatial size (constructor H, W, n, ...)
            continue

        def eager(m: torch.nn.Module = module, xs: tuple[torch.Tensor, ...] = inputs) -> None:
            with torch.inference_mode():
                m(*xs)

        latency = time_side_by_side({"eager": eager}, rounds=2)["eager"]
        positions = size if len(base) == 3 else size * size  # tokens, or H*W
        points.append(
            {
                "size": size,
                "positions": positions,
                "shape": list(shapes[0]),
                "flops": flops,
                "eager_ms": latency.median_ms,
            }
        )
    return {
        "name": name,
        "points": points,
        **flop_growth([p["positions"] for p in points], [p["flops"] for p in points]),
    }


# FLOPs of these modules are sums of power-law terms in the number of positions N: constant
# (pooled vectors), N^0.5 and constant (convs whose padding shrinks the map: (H - 2p)^2),
# N (convs, projections), N^1.5 (criss-cross: N * (H + W - 1)), N^2 (full or routed attention).
# Exact FLOP counts at five sizes pin the five coefficients down.
GROWTH_POWERS = (0.0, 0.5, 1.0, 1.5, 2.0)
GROWTH_NAMES = {0.0: "constant", 0.5: "N^0.5", 1.0: "linear", 1.5: "N^1.5", 2.0: "quadratic"}
_POWERS_BY_PRIORITY = (1.0, 2.0, 0.0, 1.5, 0.5)  # which terms to fit when fewer sizes ran


def flop_growth(
    positions: Sequence[int], flops: Sequence[int], min_share: float = 0.02
) -> dict[str, object]:
    """Split FLOPs(N) into the power-law terms above (exact for five sizes); the growth is the
    highest term worth at least ``min_share`` of the FLOPs at the largest size.

    The last-step exponent alone misleads: at 3136 tokens a 512-wide self-attention still
    spends a quarter of its FLOPs on linear projections, so its exponent there is 1.6.
    """
    result: dict[str, object] = {"flop_exponent": None, "growth": None, "term_shares": {}}
    if len(positions) < 2:
        return result
    if flops[-2] <= 0 or flops[-1] <= 0:
        result["growth"] = "constant" if all(f == flops[0] for f in flops) else None
        return result
    result["flop_exponent"] = math.log(flops[-1] / flops[-2]) / math.log(
        positions[-1] / positions[-2]
    )
    n = np.asarray(positions, dtype=np.float64) / positions[-1]  # scaled for conditioning
    y = np.asarray(flops, dtype=np.float64) / flops[-1]
    powers = sorted(_POWERS_BY_PRIORITY[: len(positions)])
    coefficients = np.linalg.lstsq(np.stack([n**p for p in powers], axis=1), y, rcond=None)[0]
    # signed shares of the FLOPs at the largest size (n = 1); a term may be negative, as the
    # -1 in criss-cross attention's N * (H + W - 1)
    shares = {GROWTH_NAMES[p]: float(c) for p, c in zip(powers, coefficients)}
    if sum(abs(c) for c in coefficients) > 1.25:
        # large terms cancelling each other: the counts are not such a sum (sizes rounded by
        # strides, pooling bins or window padding); the last step's exponent is all there is
        exponent = result["flop_exponent"]
        nearest = min(GROWTH_POWERS, key=lambda p: abs(p - exponent))
        result["growth"] = GROWTH_NAMES[
            nearest if nearest != 0.5 else (0.0 if exponent < 0.5 else 1.0)
        ]
        return result
    result["term_shares"] = shares
    significant = [p for p in powers if abs(shares[GROWTH_NAMES[p]]) >= min_share]
    result["growth"] = GROWTH_NAMES[max(significant)] if significant else "constant"
    return result


def describe_growth(entry: dict[str, object]) -> str:
    """'name  quadratic: at 3136 positions N^2 62%, N 38% of FLOPs (last step N^1.66)'."""
    points = entry["points"]
    terms = ", ".join(
        f"{term} {100 * share:.0f}%"
        for term, share in sorted(entry["term_shares"].items(), key=lambda item: -abs(item[1]))
        if abs(share) >= 0.005
    )
    text = f"{entry['name']:<26} {entry['growth']}"
    if terms:
        text += f": at {points[-1]['positions']} positions {terms} of FLOPs"
    if entry["flop_exponent"] is not None:
        text += f" (last step: FLOPs ~ N^{entry['flop_exponent']:.2f})"
    return text


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'attn-export[bench]'") from None


def plot(rows: Sequence[BenchRow], path: Path, sweeps: Sequence[dict[str, object]] = ()) -> None:
    """Speed-ups and peak fractions per module; with sweep results, FLOP growth below them."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r.ratio)
    swept = [s for s in sweeps if len(s["points"]) >= 2]
    bars_height = max(4, 0.28 * len(rows) + 1.5)
    fig = plt.figure(figsize=(13, bars_height + (5 if swept else 0)))
    grid = fig.add_gridspec(2 if swept else 1, 2, height_ratios=[bars_height, 5] if swept else None)
    left = fig.add_subplot(grid[0, 0])
    right = fig.add_subplot(grid[0, 1], sharey=left)
    y = np.arange(len(rows))
    labels = [r.name for r in rows]
    colours = ["tab:red" if r.ratio < 1 else "tab:green" for r in rows]
    left.barh(y, [r.ratio for r in rows], color=colours)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_yticks(y, labels)
    left.set_xlabel("speed-up of ONNX Runtime over PyTorch eager (x)")
    left.set_title(f"ORT vs eager, geometric mean {geometric_mean([r.ratio for r in rows]):.2f}x")
    right.barh(
        y,
        [100 * r.ort_peak_fraction for r in rows],
        color=["tab:blue" if r.flops >= TARGET_MIN_FLOPS else "lightgrey" for r in rows],
    )
    right.axvline(100 * TARGET_PEAK_FRACTION, color="black", linestyle="--", linewidth=1)
    right.tick_params(labelleft=False)
    right.set_xlabel("ONNX Runtime GFLOP/s as % of the measured matmul peak")
    right.set_title(
        f"closeness to the matmul peak (grey: < {TARGET_MIN_FLOPS / 1e6:.0f} MFLOP, no target)"
    )
    if swept:
        growth = fig.add_subplot(grid[1, :])
        for entry in swept:
            points = entry["points"]
            positions = [p["positions"] for p in points]
            faster_than_linear = entry["growth"] in ("quadratic", "N^1.5")
            growth.loglog(
                positions,
                [max(p["flops"], 1) / 1e6 for p in points],
                marker="o",
                markersize=3,
                color="tab:red" if faster_than_linear else "tab:grey",
                alpha=0.9 if faster_than_linear else 0.4,
            )
            if faster_than_linear:  # the ones a user must watch: label them at their largest size
                growth.annotate(
                    f"{entry['name']} ({entry['growth']})",
                    (positions[-1], points[-1]["flops"] / 1e6),
                    fontsize=8,
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                )
        growth.set_xlim(
            right=max(p["positions"] for e in swept for p in e["points"]) * 3
        )  # room for labels
        growth.set_xlabel("positions (tokens, or H x W)")
        growth.set_ylabel("MFLOP")
        growth.set_title(
            "--sweep: cost growth with input size (red: faster than linear, grey: linear or constant)"
        )
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


def run_bench(
    targets: Sequence[str | BenchTarget],
    threads: int,
    json_path: Path | None,
    plot_path: Path | None,
    sweep: bool,
    report: Callable[[str], None] = print,
    progress: bool = True,
    profile: bool = False,
) -> dict[str, object]:
    targets = [BenchTarget(t) if isinstance(t, str) else t for t in targets]
    gpu = torch.cuda.is_available()
    rates = matmul_peak_gflops(threads)
    peak = rates["peak"]
    report(
        f"threads {threads} (torch.set_num_threads and ORT intra_op_num_threads); matmul peak {peak:.0f} GFLOP/s "
        f"(2048x2048 fp32 GEMM measured now: torch {rates['torch']:.0f}, onnxruntime {rates['onnxruntime']:.0f}); "
        "FLOPs = matmul/conv FLOPs of the PyTorch forward"
    )
    report(
        f"{'module':<28}{'MFLOP':>9} {'eager ms':>10} {'p90':>9} {'ORT ms':>10} {'p90':>9} {'eager/ORT':>10}{'%peak':>7}"
    )
    rows: list[BenchRow] = []
    for target in with_progress(targets, "bench", progress):
        row = bench_module(target, threads, peak, gpu=gpu, profile=profile)
        rows.append(row)
        gpu_text = "".join(
            f"  {k} {v.median_ms:.3f} ms ({row.eager.median_ms / v.median_ms:.1f}x)"
            for k, v in row.extra.items()
        )
        report(
            f"{row.name:<28}{row.flops / 1e6:>9.1f} {row.eager.median_ms:>10.3f} {row.eager.p90_ms:>9.3f}"
            f" {row.ort.median_ms:>10.3f} {row.ort.p90_ms:>9.3f} {row.ratio:>9.2f}x{100 * row.ort_peak_fraction:>6.0f}%{gpu_text}"
        )
        if row.ort_kernel_ms:
            report(f"  profile {row.name}: {describe_profile(row.ort_kernel_ms)}")
    ratios = [r.ratio for r in rows]
    big = [r for r in rows if r.flops >= TARGET_MIN_FLOPS]
    summary = {
        "threads": threads,
        "matmul_peak_gflops": peak,
        "matmul_gflops_by_runtime": rates,
        "geomean_ratio": geometric_mean(ratios),
        "min_ratio": min(ratios) if ratios else None,
        "below_1x": [r.name for r in rows if r.ratio < 1.0],
        "big_modules_below_60pct_peak": [
            r.name for r in big if r.ort_peak_fraction < TARGET_PEAK_FRACTION
        ],
    }
    report(
        f"geometric mean eager/ORT time ratio {summary['geomean_ratio']:.2f}x over {len(rows)} module{'' if len(rows) == 1 else 's'}; "
        f"min {summary['min_ratio']:.2f}x; below 1.0x: {', '.join(summary['below_1x']) or 'none'}"
    )
    if big:
        report(
            f"modules >= {TARGET_MIN_FLOPS / 1e6:.0f} MFLOP below {100 * TARGET_PEAK_FRACTION:.0f}% of peak: {', '.join(summary['big_modules_below_60pct_peak']) or 'none'}"
        )
    result: dict[str, object] = {"summary": summary, "rows": [asdict(r) for r in rows]}
    sweeps: list[dict[str, object]] = []
    if sweep:
        sweeps = [sweep_module(t) for t in with_progress(targets, "sweep", progress)]
        for entry in sweeps:
            if entry["growth"] is not None:
                report(f"sweep {describe_growth(entry)}")
            else:
                ran = [str(p["positions"]) for p in entry["points"]]
                where = f"only at {ran[0]} positions" if ran else "at none of the sweep sizes"
                report(
                    f"sweep {entry['name']:<26} no growth measured: it runs {where} "
                    "(its constructor fixes the input size)"
                )
        result["sweep"] = sweeps
    if json_path:
        atomic_write(json_path, json.dumps(result, indent=2) + "\n")
    if plot_path:
        plot(rows, plot_path, sweeps)
    return result


def with_progress(items: Sequence, label: str, enabled: bool):
    """Yield ``items`` under a rich progress bar (when ``enabled``: a terminal is watching)."""
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            bar.update(task, description=f"{label} {getattr(item, 'name', item)}")
            yield item
            bar.advance(task)
