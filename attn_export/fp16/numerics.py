"""Small numeric helpers shared by the search and the checks."""

from __future__ import annotations

import numpy as np


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """||actual - reference|| / ||reference|| over the elements finite in both.

    float32 norms (BLAS): this ranks nodes by error, it needs no more than a few digits.
    """
    a = np.asarray(actual, np.float32).ravel()
    r = np.asarray(reference, np.float32).ravel()
    if not (np.isfinite(a).all() and np.isfinite(r).all()):
        ok = np.isfinite(a) & np.isfinite(r)
        a, r = a[ok], r[ok]
    if a.size == 0:
        return 0.0
    norm = float(np.linalg.norm(r))
    difference = float(np.linalg.norm(a - r))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / norm


def finite_peak(values: np.ndarray) -> float:
    """The largest finite magnitude (0 for none)."""
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        magnitudes = np.abs(values)
    return float(np.max(magnitudes, initial=0.0, where=np.isfinite(magnitudes)))
