"""--sweep: FLOPs and eager latency as the input grows, and the growth law of the FLOPs."""

from __future__ import annotations

from typing import TypedDict

import torch

from ..timing import time_side_by_side
from .flops import count_flops
from .growth import GrowthFit, flop_growth
from .targets import BenchTarget, as_target, build_target

# Input sizes: tokens for (B, N, C) modules, side for (B, C, H, W) ones. The same position
# counts both ways (sides squared); five sizes fix five growth terms. 42 rather than 21 keeps
# every side even, for the modules that downsample by 2.
SWEEP_TOKENS = (49, 196, 784, 1764, 3136)
SWEEP_SIDES = (7, 14, 28, 42, 56)
SWEEP_ROUNDS = 2  # the latency is a side note to the exact FLOP counts: fewer rounds suffice
SHOWN_SHARE = 0.005  # terms below half a percent are left out of the printed line
GROWTH_NAME_COLUMN = 26


class SweepPoint(TypedDict):
    size: int  # tokens, or the side of the map
    positions: int  # tokens, or H*W
    shape: list[int]  # the first input's
    flops: int
    eager_ms: float


class SweepEntry(GrowthFit):
    name: str
    points: list[SweepPoint]


def _sweep_shapes(base_shapes: list[tuple[int, ...]], size: int) -> list[tuple[int, ...]]:
    """Every input at ``size`` tokens, or at a ``size`` x ``size`` map."""
    base = base_shapes[0]
    if len(base) == 3:
        return [(s[0], size, s[2]) for s in base_shapes]
    if base[1] == base[2] != base[3]:  # (B, H, W, C) modules
        return [(s[0], size, size, s[3]) for s in base_shapes]
    return [(s[0], s[1], size, size) for s in base_shapes]


def _sweep_point(
    module: torch.nn.Module, shapes: list[tuple[int, ...]], size: int
) -> SweepPoint | None:
    """The point at ``size``, or None where the module refuses that size."""
    torch.manual_seed(0)
    inputs = tuple(torch.randn(s) for s in shapes)
    try:
        flops = count_flops(module, inputs)
    except Exception:  # modules with a fixed spatial size (constructor H, W, n, ...)
        return None

    def eager() -> None:
        with torch.inference_mode():
            module(*inputs)

    latency = time_side_by_side({"eager": eager}, rounds=SWEEP_ROUNDS)["eager"]
    return SweepPoint(
        size=size,
        positions=size if len(shapes[0]) == 3 else size * size,
        shape=list(shapes[0]),
        flops=flops,
        eager_ms=latency.median_ms,
    )


def sweep_module(target: str | BenchTarget) -> SweepEntry:
    """FLOPs and eager latency as the input grows, and the FLOP count's growth law."""
    name, module, base_shapes = build_target(as_target(target))
    rank = len(base_shapes[0])
    sizes = SWEEP_TOKENS if rank == 3 else SWEEP_SIDES if rank == 4 else ()
    points: list[SweepPoint] = []
    for size in sizes:
        point = _sweep_point(module, _sweep_shapes(base_shapes, size), size)
        if point is not None:
            points.append(point)
    return {
        "name": name,
        "points": points,
        **flop_growth([p["positions"] for p in points], [p["flops"] for p in points]),
    }


def describe_sweep(entry: SweepEntry) -> str:
    """'sweep name  quadratic: at 3136 positions quadratic 62%, linear 38% of FLOPs (last step:
    FLOPs ~ N^1.66)', or why no growth was measured."""
    points = entry["points"]
    if entry["growth"] is None:
        ran = [str(p["positions"]) for p in points]
        where = f"only at {ran[0]} positions" if ran else "at none of the sweep sizes"
        return (
            f"sweep {entry['name']:<{GROWTH_NAME_COLUMN}} no growth measured: it runs {where} "
            "(its constructor fixes the input size)"
        )
    terms = ", ".join(
        f"{term} {100 * share:.0f}%"
        for term, share in sorted(entry["term_shares"].items(), key=lambda item: -abs(item[1]))
        if abs(share) >= SHOWN_SHARE
    )
    text = f"sweep {entry['name']:<{GROWTH_NAME_COLUMN}} {entry['growth']}"
    if terms:
        text += f": at {points[-1]['positions']} positions {terms} of FLOPs"
    if entry["flop_exponent"] is not None:
        text += f" (last step: FLOPs ~ N^{entry['flop_exponent']:.2f})"
    return text
