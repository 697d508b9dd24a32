"""The verdict: per-probe checks, their per-scale summaries, and the converter's result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..compare import cosine_similarity, json_float
from ..tolerances import FP16_MIN_COSINE as DEFAULT_MIN_COSINE
from ..tolerances import MIN_FP16_WEIGHT_FRACTION


@dataclass
class Fp16Check:
    """The simulated fp16 graph against the fp32 graph on one probe (a draw at one scale)."""

    scale: float
    cosine: float
    max_abs_err: float
    finite: bool
    passed: bool
    reference_finite: bool = True
    draw: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "draw": self.draw,
            "scale": self.scale,
            "cosine": json_float(self.cosine),
            "max_abs_err": json_float(self.max_abs_err),
            "finite": self.finite,
            "reference_finite": self.reference_finite,
            "passed": self.passed,
        }

    def problem(self) -> str:
        where = f"x{self.scale:g} ({self.draw})" if self.draw else f"x{self.scale:g}"
        if not self.reference_finite:
            return f"{where}: the fp32 reference itself is non-finite"
        if not self.finite:
            return f"{where}: non-finite output"
        return f"{where}: cosine {self.cosine:.6f}"


def check(
    scale: float,
    references: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    min_cosine: float,
    draw: str = "",
) -> Fp16Check:
    finite = all(bool(np.isfinite(o).all()) for o in outputs)
    reference_finite = all(bool(np.isfinite(r).all()) for r in references)
    pairs = list(zip(references, outputs, strict=True))
    cosine = min(cosine_similarity(r, o) for r, o in pairs)
    with np.errstate(invalid="ignore", over="ignore"):
        max_abs = max(
            float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64)), initial=0.0))
            for r, o in pairs
        )
    passed = finite and reference_finite and bool(np.isfinite(cosine)) and cosine >= min_cosine
    return Fp16Check(
        float(scale),
        float(cosine),
        max_abs if np.isfinite(max_abs) else float("inf"),
        finite,
        passed,
        reference_finite,
        draw,
    )


def summary(
    draws: Sequence[str], scales: Sequence[float], checks: Sequence[Fp16Check]
) -> dict[str, Any]:
    """Draw labels, scales, and per scale the worst cosine and the largest error."""
    per_scale = []
    for scale in scales:
        at_scale = [c for c in checks if c.scale == float(scale)]
        per_scale.append(
            {
                "scale": float(scale),
                "worst_cosine": json_float(min(c.cosine for c in at_scale)),
                "max_abs_err": json_float(max(c.max_abs_err for c in at_scale)),
                "finite": all(c.finite for c in at_scale),
                "passed": all(c.passed for c in at_scale),
            }
        )
    return {
        "draws": list(draws),
        "scales": [float(s) for s in scales],
        "passed": bool(checks) and all(c.passed for c in checks),
        "per_scale": per_scale,
    }


@dataclass
class Fp16Result:
    """The fp16 graph, its fp32 islands, and the checks: tuning draws (what the search saw)
    and check draws (unseen by the search; ``passed`` is decided on these alone)."""

    model: onnx.ModelProto
    fp32_nodes: list[dict[str, Any]]  # {name, op_type, reason, round}, in graph order
    fp16_weight_fraction: float
    checks: list[Fp16Check]  # check draws x scales
    tuning: list[Fp16Check] = field(default_factory=list)  # tuning draws x scales
    tuning_draws: list[str] = field(default_factory=list)
    check_draws: list[str] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    min_cosine: float = DEFAULT_MIN_COSINE
    min_weight_fraction: float = MIN_FP16_WEIGHT_FRACTION
    islands: list[list[str]] = field(default_factory=list)  # connected groups of fp32_nodes
    rounds: int = 0
    stop_reason: str = ""
    notes: list[str] = field(default_factory=list)  # risks the search left, nodes it could not move
    weight_elements: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            bool(self.checks)
            and all(c.passed for c in self.checks)
            and (self.fp16_weight_fraction >= self.min_weight_fraction)
        )

    @property
    def reason(self) -> str:
        """Why it failed, in one line ("" when it passed)."""
        problems = [f"check {c.problem()}" for c in self.checks if not c.passed]
        if self.fp16_weight_fraction < self.min_weight_fraction:
            problems.append(
                f"only {self.fp16_weight_fraction:.1%} of the float weights are float16"
                f" (need {self.min_weight_fraction:.0%})"
            )
        if problems and self.stop_reason:
            problems.append(self.stop_reason)
        return "; ".join(problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "method": "fp16 storage simulation (fp32 math per node, float16 rounding between nodes)"
            " vs the fp32 graph on ONNX Runtime CPU; islands chosen on the tuning draws, the"
            " verdict from the check draws only, each draw multiplied by each scale",
            "min_cosine": self.min_cosine,
            "min_fp16_weight_fraction": self.min_weight_fraction,
            "fp16_weight_fraction": round(self.fp16_weight_fraction, 6),
            "weight_elements": dict(self.weight_elements),
            "fp32_nodes": [dict(n) for n in self.fp32_nodes],
            "islands": [list(i) for i in self.islands],
            "rounds": self.rounds,
            "search_stop": self.stop_reason or "all tuning checks pass",
            "search_notes": list(self.notes),
            "tuning": summary(self.tuning_draws, self.scales, self.tuning),
            "check": summary(self.check_draws, self.scales, self.checks),
            "checks": [c.to_dict() for c in self.checks],
        }
