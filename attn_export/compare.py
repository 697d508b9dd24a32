"""Compare a backend's outputs with PyTorch's, output by output, on one input draw.

The rules and their bounds are in :mod:`attn_export.tolerances`: elementwise
``|out - ref| <= atol + rtol * |ref|`` and a scale-free error relative to the reference's
variation (``nrmse``), so that a zero, constant, sign-flipped or wrong-branch graph fails
at any output magnitude. Every output of every draw is compared before anything is
reported, and :func:`raise_on_failures` raises once with every failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import VerificationError
from .tolerances import NRMSE_FLOOR_SHARE, Tolerance


@dataclass
class OutputCheck:
    output: str
    max_abs_err: float
    max_rel_err: float
    nrmse: float
    cosine: float
    passed: bool
    problem: str = ""  # why it failed, in words (shape, NaN/Inf, which rule)

    def to_dict(self) -> dict:
        return {k: json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class BackendCheck:
    backend: str
    tolerance: Tolerance
    draw: str = ""  # which input draw, e.g. "fresh normal (seed 1001)"
    outputs: list[OutputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def max_abs_err(self) -> float:
        return max((o.max_abs_err for o in self.outputs), default=float("nan"))

    @property
    def worst_nrmse(self) -> float:
        return max((o.nrmse for o in self.outputs), default=float("nan"))

    def failures(self) -> list[str]:
        where = f" on {self.draw}" if self.draw else ""
        return [
            f"{self.backend} {o.output}{where}: {o.problem}" for o in self.outputs if not o.passed
        ]

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "draw": self.draw,
            "passed": self.passed,
            **asdict(self.tolerance),
            "max_abs_err": json_float(self.max_abs_err),
            "worst_nrmse": json_float(self.worst_nrmse),
            "outputs": [o.to_dict() for o in self.outputs],
        }


def json_float(value: float) -> float | None:
    """A float for a JSON file: NaN and infinities (which JSON lacks) become null."""
    return float(value) if np.isfinite(value) else None


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not (np.isfinite(a64).all() and np.isfinite(b64).all()):
        return float("nan")
    denominator = np.linalg.norm(a64) * np.linalg.norm(b64)
    if denominator == 0.0:
        return 1.0 if np.array_equal(a64, b64) else 0.0
    return float(np.dot(a64, b64) / denominator)


def normalized_rms_error(reference: np.ndarray, actual: np.ndarray) -> float:
    """||actual - reference|| over the reference's variation (see the module docstring)."""
    ref64, act64 = reference.astype(np.float64).ravel(), actual.astype(np.float64).ravel()
    error = float(np.linalg.norm(act64 - ref64))
    if error == 0.0:
        return 0.0
    scale = max(
        float(np.linalg.norm(ref64 - ref64.mean())),
        NRMSE_FLOOR_SHARE * float(np.linalg.norm(ref64)),
    )
    return error / scale if scale > 0.0 else float("inf")


def compare_output(
    name: str, reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance
) -> OutputCheck:
    reference, actual = np.asarray(reference), np.asarray(actual)
    if reference.shape != actual.shape:
        return _failed(name, f"shape {actual.shape} != reference {reference.shape}")
    ref64, act64 = reference.astype(np.float64), actual.astype(np.float64)
    bad_ref, bad_act = ~np.isfinite(ref64), ~np.isfinite(act64)
    if bad_ref.any() or bad_act.any():
        where = "reference" if bad_ref.any() else "output"
        return _failed(
            name, f"{int(max(bad_ref.sum(), bad_act.sum()))} NaN/Inf values in the {where}"
        )
    if ref64.size == 0:
        return OutputCheck(name, 0.0, 0.0, 0.0, 1.0, True)
    error = np.abs(act64 - ref64)
    magnitude = np.abs(ref64)
    max_abs = float(error.max())
    max_rel = float((error / np.maximum(magnitude, np.finfo(np.float32).tiny)).max())
    nrmse = normalized_rms_error(ref64, act64)
    cosine = cosine_similarity(ref64, act64)
    allowed = tolerance.atol + tolerance.rtol * magnitude
    exceed = error > allowed
    problems = []
    if exceed.any():
        worst = int(np.argmax(error - allowed))
        problems.append(
            f"{int(exceed.sum())}/{error.size} elements exceed atol {tolerance.atol:g}"
            f" + rtol {tolerance.rtol:g}*|ref| (worst |{act64.flat[worst]:.6g}"
            f" - {ref64.flat[worst]:.6g}| = {error.flat[worst]:.3g})"
        )
    if nrmse > tolerance.max_nrmse:
        rms = float(np.sqrt(np.mean(ref64**2)))
        problems.append(
            f"error is {nrmse:.3g} of the output's variation (bound {tolerance.max_nrmse:g};"
            f" cosine {cosine:.4f}, reference RMS {rms:.3g})"
        )
    return OutputCheck(name, max_abs, max_rel, nrmse, cosine, not problems, "; ".join(problems))


def _failed(name: str, problem: str) -> OutputCheck:
    inf = float("inf")
    return OutputCheck(name, inf, inf, inf, float("nan"), False, problem)


def compare(
    backend: str,
    references: Sequence[np.ndarray],
    actuals: Sequence[np.ndarray],
    tolerance: Tolerance,
    output_names: Sequence[str] | None = None,
    draw: str = "",
) -> BackendCheck:
    """Compare every output; never raises (see :func:`raise_on_failures`)."""
    if tolerance.atol < 0 or tolerance.rtol < 0 or tolerance.max_nrmse <= 0:
        raise ValueError("tolerances must be non-negative (max_nrmse positive)")
    names = list(output_names) if output_names else [f"output_{i}" for i in range(len(references))]
    check = BackendCheck(backend, tolerance, draw)
    if len(actuals) != len(references):
        check.outputs.append(
            _failed("*", f"{len(actuals)} outputs, reference has {len(references)}")
        )
        return check
    check.outputs = [
        compare_output(n, r, a, tolerance) for n, r, a in zip(names, references, actuals)
    ]
    return check


def raise_on_failures(checks: Sequence[BackendCheck]) -> None:
    """Raise one :class:`VerificationError` listing every failed output of every backend and
    draw."""
    failures = [line for check in checks for line in check.failures()]
    if failures:
        raise VerificationError("; ".join(failures))
