"""The bench command: time each target, print a table and a summary, write JSON and a plot."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..ui import with_progress
from .flops import PEAK_GEMM_SIZE, matmul_peak_gflops
from .measure import (
    TARGET_MIN_FLOPS,
    TARGET_PEAK_FRACTION,
    BenchRow,
    bench_module,
    geometric_mean,
)
from .plot import plot, require_matplotlib
from .profile import describe_profile
from .sweep import SweepEntry, describe_sweep, sweep_module
from .targets import BenchTarget, as_target, build_target, check_selection

# Table columns, in characters: wide enough for the zoo's names and for times up to 99 s.
NAME_COLUMN = 28
MFLOP_COLUMN = 9
MS_COLUMN = 10  # a median
P90_COLUMN = 9
RATIO_COLUMN = 10  # the number and its "x"
PEAK_COLUMN = 7  # the number and its "%"


@dataclass
class BenchOptions:
    """What `attn-export bench` was asked for, its arguments parsed."""

    names: Sequence[str] = ()
    all_modules: bool = False
    shapes: Sequence[tuple[int, ...]] = ()
    kwargs: dict[str, object] = field(default_factory=dict)
    weights: Path | None = None
    threads: int = 1
    json_path: Path | None = None
    plot_path: Path | None = None
    sweep: bool = False
    profile: bool = False
    progress: bool = False


def bench_command(options: BenchOptions) -> None:
    """Check the selection, the output files and the named targets before the long run, then
    run it."""
    from .. import modules
    from ..options import check_output_file

    per_module = bool(options.shapes or options.kwargs or options.weights is not None)
    check_selection(options.names, options.all_modules, per_module)
    if options.json_path:
        check_output_file(options.json_path, "--json")
    if options.plot_path:
        check_output_file(options.plot_path, "--plot", suffix=".png")
        require_matplotlib()
    names = modules.list_modules() if options.all_modules else options.names
    targets = [BenchTarget(n, options.shapes, options.kwargs, options.weights) for n in names]
    for target in targets if options.names else ():
        # unknown names, failing imports, bad or missing --shape/--set/--weights: fail now, as
        # export would, not after the matmul peak is measured
        build_target(target)
    run_bench(
        targets,
        options.threads,
        options.json_path,
        options.plot_path,
        options.sweep,
        progress=options.progress,
        profile=options.profile,
    )


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
    """Bench every target, print the table and summary; returns what --json writes."""
    bench_targets = [as_target(t) for t in targets]
    gpu = torch.cuda.is_available()
    rates = matmul_peak_gflops(threads)
    report(_preamble(threads, rates))
    report(_header())
    rows: list[BenchRow] = []
    for target in with_progress(bench_targets, "bench", progress):
        row = bench_module(target, threads, rates["peak"], gpu=gpu, profile=profile)
        rows.append(row)
        report(_row_text(row))
        if row.ort_kernel_ms:
            report(f"  profile {row.name}: {describe_profile(row.ort_kernel_ms)}")
    summary = _summary(rows, threads, rates)
    for line in _summary_lines(rows, summary):
        report(line)
    result: dict[str, object] = {"summary": summary, "rows": [asdict(r) for r in rows]}
    sweeps: list[SweepEntry] = []
    if sweep:
        sweeps = [sweep_module(t) for t in with_progress(bench_targets, "sweep", progress)]
        for entry in sweeps:
            report(describe_sweep(entry))
        result["sweep"] = sweeps
    if json_path:
        atomic_write(json_path, json.dumps(result, indent=2) + "\n")
    if plot_path:
        plot(rows, plot_path, sweeps)
    return result


def _preamble(threads: int, rates: dict[str, float]) -> str:
    gemm = f"{PEAK_GEMM_SIZE}x{PEAK_GEMM_SIZE}"
    return (
        f"threads {threads} (torch.set_num_threads and ORT intra_op_num_threads); "
        f"matmul peak {rates['peak']:.0f} GFLOP/s "
        f"({gemm} fp32 GEMM measured now: torch {rates['torch']:.0f}, "
        f"onnxruntime {rates['onnxruntime']:.0f}); "
        "FLOPs = matmul/conv FLOPs of the PyTorch forward"
    )


def _header() -> str:
    return (
        f"{'module':<{NAME_COLUMN}}{'MFLOP':>{MFLOP_COLUMN}} {'eager ms':>{MS_COLUMN}}"
        f" {'p90':>{P90_COLUMN}} {'ORT ms':>{MS_COLUMN}} {'p90':>{P90_COLUMN}}"
        f" {'eager/ORT':>{RATIO_COLUMN}}{'%peak':>{PEAK_COLUMN}}"
    )


def _row_text(row: BenchRow) -> str:
    gpu_text = "".join(
        f"  {k} {v.median_ms:.3f} ms ({row.eager.median_ms / v.median_ms:.1f}x)"
        for k, v in row.extra.items()
    )
    return (
        f"{row.name:<{NAME_COLUMN}}{row.flops / 1e6:>{MFLOP_COLUMN}.1f}"
        f" {row.eager.median_ms:>{MS_COLUMN}.3f} {row.eager.p90_ms:>{P90_COLUMN}.3f}"
        f" {row.ort.median_ms:>{MS_COLUMN}.3f} {row.ort.p90_ms:>{P90_COLUMN}.3f}"
        f" {row.ratio:>{RATIO_COLUMN - 1}.2f}x{100 * row.ort_peak_fraction:>{PEAK_COLUMN - 1}.0f}%"
        f"{gpu_text}"
    )


def _summary(rows: Sequence[BenchRow], threads: int, rates: dict[str, float]) -> dict[str, object]:
    ratios = [r.ratio for r in rows]
    return {
        "threads": threads,
        "matmul_peak_gflops": rates["peak"],
        "matmul_gflops_by_runtime": rates,
        "geomean_ratio": geometric_mean(ratios),
        "min_ratio": min(ratios) if ratios else None,
        "below_1x": _below_1x(rows),
        "big_modules_below_60pct_peak": _big_below_peak(rows),
    }


def _below_1x(rows: Sequence[BenchRow]) -> list[str]:
    return [r.name for r in rows if r.ratio < 1.0]


def _big_below_peak(rows: Sequence[BenchRow]) -> list[str]:
    """The modules of at least TARGET_MIN_FLOPS below the peak goal."""
    return [
        r.name
        for r in rows
        if r.flops >= TARGET_MIN_FLOPS and r.ort_peak_fraction < TARGET_PEAK_FRACTION
    ]


def _summary_lines(rows: Sequence[BenchRow], summary: dict[str, object]) -> list[str]:
    count = f"{len(rows)} module{'' if len(rows) == 1 else 's'}"
    lines = [
        f"geometric mean eager/ORT time ratio {summary['geomean_ratio']:.2f}x over {count}; "
        f"min {summary['min_ratio']:.2f}x; below 1.0x: {', '.join(_below_1x(rows)) or 'none'}"
    ]
    if any(r.flops >= TARGET_MIN_FLOPS for r in rows):
        lines.append(
            f"modules >= {TARGET_MIN_FLOPS / 1e6:.0f} MFLOP below"
            f" {100 * TARGET_PEAK_FRACTION:.0f}% of peak:"
            f" {', '.join(_big_below_peak(rows)) or 'none'}"
        )
    return lines
