"""Compare a backend's outputs with the reference: max abs and max rel error per output.

An output passes when it has the reference's shape, is finite wherever the reference is,
and every element satisfies ``|out - ref| <= atol + rtol * |ref|`` (numpy's ``allclose``
rule). All outputs are compared before anything is reported, so one report lists every
failure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from .errors import VerificationError


@dataclass
class OutputCheck:
    output: str
    max_abs_err: float
    max_rel_err: float
    passed: bool
    problem: str = ""  # why it failed, in words (shape, NaN/Inf, tolerance)


@dataclass
class BackendCheck:
    backend: str
    atol: float
    rtol: float
    outputs: List[OutputCheck] = field(default_factory=list)
    cosine: Optional[float] = None
    min_cosine: Optional[float] = None

    @property
    def passed(self) -> bool:
        cosine_ok = self.min_cosine is None or (self.cosine is not None and self.cosine >= self.min_cosine)
        return bool(self.outputs) and all(o.passed for o in self.outputs) and cosine_ok

    @property
    def max_abs_err(self) -> float:
        return max((o.max_abs_err for o in self.outputs), default=float("nan"))

    @property
    def max_rel_err(self) -> float:
        return max((o.max_rel_err for o in self.outputs), default=float("nan"))

    def failures(self) -> List[str]:
        lines = [f"{self.backend} {o.output}: {o.problem}" for o in self.outputs if not o.passed]
        if self.min_cosine is not None and not (self.cosine is not None and self.cosine >= self.min_cosine):
            lines.append(f"{self.backend}: cosine similarity {self.cosine} below {self.min_cosine}")
        return lines

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "max_abs_err": _json_float(self.max_abs_err),
            "max_rel_err": _json_float(self.max_rel_err),
            "atol": self.atol,
            "rtol": self.rtol,
            "cosine": _json_float(self.cosine) if self.cosine is not None else None,
            "min_cosine": self.min_cosine,
            "passed": self.passed,
            "outputs": [{**asdict(o), "max_abs_err": _json_float(o.max_abs_err), "max_rel_err": _json_float(o.max_rel_err)} for o in self.outputs],
        }


def _json_float(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN/Inf


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not (np.isfinite(a64).all() and np.isfinite(b64).all()):
        return float("nan")
    denominator = np.linalg.norm(a64) * np.linalg.norm(b64)
    if denominator == 0.0:
        return 1.0 if np.array_equal(a64, b64) else 0.0
    return float(np.dot(a64, b64) / denominator)


def compare_output(name: str, reference: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputCheck:
    reference, actual = np.asarray(reference), np.asarray(actual)
    if reference.shape != actual.shape:
        return OutputCheck(name, float("inf"), float("inf"), False, f"shape {actual.shape} != reference {reference.shape}")
    ref64, act64 = reference.astype(np.float64), actual.astype(np.float64)
    bad_ref = ~np.isfinite(ref64)
    bad_act = ~np.isfinite(act64)
    if bad_ref.any() or bad_act.any():
        where = "reference" if bad_ref.any() else "output"
        count = int(max(bad_ref.sum(), bad_act.sum()))
        return OutputCheck(name, float("inf"), float("inf"), False, f"{count} NaN/Inf values in the {where}")
    if ref64.size == 0:
        return OutputCheck(name, 0.0, 0.0, True)
    error = np.abs(act64 - ref64)
    magnitude = np.abs(ref64)
    max_abs = float(error.max())
    max_rel = float((error / np.maximum(magnitude, np.finfo(np.float32).tiny)).max())
    allowed = atol + rtol * magnitude
    exceed = error > allowed
    if exceed.any():
        worst = int(np.argmax(error - allowed))
        return OutputCheck(
            name,
            max_abs,
            max_rel,
            False,
            f"{int(exceed.sum())}/{error.size} elements exceed atol {atol:g} + rtol {rtol:g}*|ref|"
            f" (worst: |{act64.flat[worst]:.6g} - {ref64.flat[worst]:.6g}| = {error.flat[worst]:.3g};"
            f" max abs {max_abs:.3g}, max rel {max_rel:.3g})",
        )
    return OutputCheck(name, max_abs, max_rel, True)


def compare(
    backend: str,
    references: Sequence[np.ndarray],
    actuals: Sequence[np.ndarray],
    atol: float,
    rtol: float,
    output_names: Optional[Sequence[str]] = None,
    min_cosine: Optional[float] = None,
) -> BackendCheck:
    """Compare every output; never raises (see :func:`raise_on_failures`)."""
    if atol < 0 or rtol < 0:
        raise ValueError("tolerances must be non-negative")
    names = list(output_names) if output_names else [f"output_{i}" for i in range(len(references))]
    check = BackendCheck(backend, atol, rtol, min_cosine=min_cosine)
    if len(actuals) != len(references):
        check.outputs.append(OutputCheck("*", float("inf"), float("inf"), False, f"{len(actuals)} outputs, reference has {len(references)}"))
        return check
    check.outputs = [compare_output(n, r, a, atol, rtol) for n, r, a in zip(names, references, actuals)]
    if min_cosine is not None or len(references) == 1:
        cosines = [cosine_similarity(r, a) for r, a in zip(references, actuals) if np.shape(r) == np.shape(a)]
        check.cosine = min(cosines) if len(cosines) == len(references) else float("nan")
    return check


def raise_on_failures(checks: Sequence[BackendCheck]) -> None:
    """Raise one :class:`VerificationError` listing every failed output of every backend."""
    failures = [line for check in checks for line in check.failures()]
    if failures:
        raise VerificationError("; ".join(failures))
