"""How a module's FLOPs grow with the number of input positions: a sum of power-law terms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

# FLOPs of these modules are sums of power-law terms in the number of positions N: constant
# (pooled vectors), N^0.5 and constant (convs whose padding shrinks the map: (H - 2p)^2),
# N (convs, projections), N^1.5 (criss-cross: N * (H + W - 1)), N^2 (full or routed attention).
# Exact FLOP counts at five sizes pin the five coefficients down.
GROWTH_POWERS = (0.0, 0.5, 1.0, 1.5, 2.0)
GROWTH_NAMES = {0.0: "constant", 0.5: "N^0.5", 1.0: "linear", 1.5: "N^1.5", 2.0: "quadratic"}
_POWERS_BY_PRIORITY = (1.0, 2.0, 0.0, 1.5, 0.5)  # which terms to fit when fewer sizes ran
MIN_TERM_SHARE = 0.02  # a term below this share of the FLOPs at the largest size is noise
# Shares (signed, summing to 1) whose sizes add up past this are large terms cancelling each
# other: the counts are no such sum (sizes rounded by strides, pooling bins or window padding).
MAX_ABS_SHARE_SUM = 1.25


class GrowthFit(TypedDict):
    flop_exponent: float | None  # the last step's: log(FLOPs ratio) / log(positions ratio)
    growth: str | None  # a GROWTH_NAMES value
    term_shares: dict[str, float]  # signed share of each term in the FLOPs at the largest size


def flop_growth(
    positions: Sequence[int], flops: Sequence[int], min_share: float = MIN_TERM_SHARE
) -> GrowthFit:
    """Split FLOPs(N) into the power-law terms above (exact for five sizes); the growth is the
    highest term worth at least ``min_share`` of the FLOPs at the largest size.

    The last-step exponent alone misleads: at 3136 tokens a 512-wide self-attention still
    spends a quarter of its FLOPs on linear projections, so its exponent there is 1.6.
    """
    result: GrowthFit = {"flop_exponent": None, "growth": None, "term_shares": {}}
    if len(positions) < 2:
        return result
    if flops[-2] <= 0 or flops[-1] <= 0:
        result["growth"] = "constant" if all(f == flops[0] for f in flops) else None
        return result
    exponent = math.log(flops[-1] / flops[-2]) / math.log(positions[-1] / positions[-2])
    result["flop_exponent"] = exponent
    shares = _term_shares(positions, flops)
    if sum(abs(share) for share in shares.values()) > MAX_ABS_SHARE_SUM:
        result["growth"] = _nearest_growth(exponent)  # the last step's exponent is all there is
        return result
    result["term_shares"] = {GROWTH_NAMES[p]: share for p, share in shares.items()}
    significant = [p for p, share in shares.items() if abs(share) >= min_share]
    result["growth"] = GROWTH_NAMES[max(significant)] if significant else "constant"
    return result


def _term_shares(positions: Sequence[int], flops: Sequence[int]) -> dict[float, float]:
    """Power -> least-squares coefficient of its term, as a signed share of the FLOPs at the
    largest size (n = 1); a term may be negative, as the -1 in criss-cross's N * (H + W - 1)."""
    n = np.asarray(positions, dtype=np.float64) / positions[-1]  # scaled for conditioning
    y = np.asarray(flops, dtype=np.float64) / flops[-1]
    powers = sorted(_POWERS_BY_PRIORITY[: len(positions)])
    coefficients = np.linalg.lstsq(np.stack([n**p for p in powers], axis=1), y, rcond=None)[0]
    return {p: float(c) for p, c in zip(powers, coefficients)}


def _nearest_growth(exponent: float) -> str:
    """The term nearest the last step's exponent; N^0.5 (a padded conv's correction to its
    linear term) rounds to constant or linear."""
    nearest = min(GROWTH_POWERS, key=lambda p: abs(p - exponent))
    return GROWTH_NAMES[nearest if nearest != 0.5 else (0.0 if exponent < 0.5 else 1.0)]
