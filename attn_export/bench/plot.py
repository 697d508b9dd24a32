"""--plot: speed-ups and peak fractions per module; with --sweep, FLOP growth below them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from ..ui import save_figure
from .measure import TARGET_MIN_FLOPS, TARGET_PEAK_FRACTION, BenchRow, geometric_mean
from .sweep import SweepEntry

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Figure layout, in inches: one bar row per module above a fixed-height growth panel.
FIGURE_WIDTH = 13
BAR_ROW_HEIGHT = 0.28
BARS_MARGIN = 1.5  # titles and axis labels around the bars
MIN_BARS_HEIGHT = 4
GROWTH_HEIGHT = 5
DPI = 110
LABEL_ROOM = 3  # the growth panel's x axis runs to this multiple of the largest size


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'attn-export[bench]'") from None


def plot(rows: Sequence[BenchRow], path: Path, sweeps: Sequence[SweepEntry] = ()) -> None:
    """Speed-ups and peak fractions per module; with sweep results, FLOP growth below them."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r.ratio)
    swept = [s for s in sweeps if len(s["points"]) >= 2]
    bars_height = max(MIN_BARS_HEIGHT, BAR_ROW_HEIGHT * len(rows) + BARS_MARGIN)
    fig = plt.figure(figsize=(FIGURE_WIDTH, bars_height + (GROWTH_HEIGHT if swept else 0)))
    grid = fig.add_gridspec(
        2 if swept else 1, 2, height_ratios=[bars_height, GROWTH_HEIGHT] if swept else None
    )
    left = fig.add_subplot(grid[0, 0])
    right = fig.add_subplot(grid[0, 1], sharey=left)
    _speedup_bars(left, rows)
    _peak_bars(right, rows)
    if swept:
        _growth_lines(fig.add_subplot(grid[1, :]), swept)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)


def _speedup_bars(ax: Axes, rows: Sequence[BenchRow]) -> None:
    y = np.arange(len(rows))
    colours = ["tab:red" if r.ratio < 1 else "tab:green" for r in rows]
    ax.barh(y, [r.ratio for r in rows], color=colours)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xlabel("speed-up of ONNX Runtime over PyTorch eager (x)")
    ax.set_title(f"ORT vs eager, geometric mean {geometric_mean([r.ratio for r in rows]):.2f}x")


def _peak_bars(ax: Axes, rows: Sequence[BenchRow]) -> None:
    ax.barh(
        np.arange(len(rows)),
        [100 * r.ort_peak_fraction for r in rows],
        color=["tab:blue" if r.flops >= TARGET_MIN_FLOPS else "lightgrey" for r in rows],
    )
    ax.axvline(100 * TARGET_PEAK_FRACTION, color="black", linestyle="--", linewidth=1)
    ax.tick_params(labelleft=False)
    ax.set_xlabel("ONNX Runtime GFLOP/s as % of the measured matmul peak")
    ax.set_title(
        f"closeness to the matmul peak (grey: < {TARGET_MIN_FLOPS / 1e6:.0f} MFLOP, no target)"
    )


def _growth_lines(ax: Axes, swept: Sequence[SweepEntry]) -> None:
    for entry in swept:
        points = entry["points"]
        positions = [p["positions"] for p in points]
        faster_than_linear = entry["growth"] in ("quadratic", "N^1.5")
        ax.loglog(
            positions,
            [max(p["flops"], 1) / 1e6 for p in points],
            marker="o",
            markersize=3,
            color="tab:red" if faster_than_linear else "tab:grey",
            alpha=0.9 if faster_than_linear else 0.4,
        )
        if faster_than_linear:  # the ones a user must watch: label them at their largest size
            ax.annotate(
                f"{entry['name']} ({entry['growth']})",
                (positions[-1], points[-1]["flops"] / 1e6),
                fontsize=8,
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
    ax.set_xlim(right=max(p["positions"] for e in swept for p in e["points"]) * LABEL_ROOM)
    ax.set_xlabel("positions (tokens, or H x W)")
    ax.set_ylabel("MFLOP")
    ax.set_title(
        "--sweep: cost growth with input size (red: faster than linear, grey: linear or constant)"
    )
