"""The comparator: tolerance arithmetic, NaN/Inf, shape mismatches, one raise for all failures."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attn_export.compare import compare, cosine_similarity, raise_on_failures
from attn_export.errors import VerificationError

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite)
tolerance = st.floats(0, 1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(arrays, tolerance, tolerance)
def test_identical_outputs_pass_at_any_tolerance(ref, atol, rtol):
    check = compare("b", [ref], [ref.copy()], atol, rtol)
    assert check.passed and check.max_abs_err == 0.0


@settings(max_examples=200, deadline=None)
@given(arrays, st.floats(1e-6, 1.0), tolerance, tolerance)
def test_verdict_is_numpys_allclose_rule(ref, delta, atol, rtol):
    actual = ref.astype(np.float64) + delta
    check = compare("b", [ref], [actual], atol, rtol)
    expected = bool(np.all(np.abs(actual - ref.astype(np.float64)) <= atol + rtol * np.abs(ref.astype(np.float64))))
    assert check.passed == expected
    assert check.max_abs_err == pytest.approx(float(np.max(np.abs(actual - ref.astype(np.float64)))))


@settings(max_examples=100, deadline=None)
@given(arrays, st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_nan_or_inf_anywhere_fails(ref, bad, data):
    actual = ref.copy()
    index = data.draw(st.integers(0, actual.size - 1))
    actual.flat[index] = bad
    assert not compare("b", [ref], [actual], 1e9, 1e9).passed
    assert not compare("b", [actual], [ref], 1e9, 1e9).passed  # a NaN reference is no pass either


@given(arrays)
def test_shape_mismatch_fails_with_reason(ref):
    check = compare("b", [ref], [np.zeros(ref.shape + (1,), np.float32)], 1.0, 1.0)
    assert not check.passed and "shape" in check.outputs[0].problem


def test_output_count_mismatch_fails():
    assert not compare("b", [np.zeros(3)], [np.zeros(3), np.zeros(3)], 1, 1).passed


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError):
        compare("b", [np.zeros(3)], [np.zeros(3)], -1e-4, 1e-4)


def test_all_failures_are_collected_and_raised_once():
    ref = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    bad = [np.full(4, 1.0, np.float32), np.full(4, np.nan, np.float32)]
    checks = [compare("ort", ref, bad, 1e-4, 1e-4, ["a", "b"]), compare("trt", ref, ref, 1e-4, 1e-4, ["a", "b"])]
    with pytest.raises(VerificationError) as error:
        raise_on_failures(checks)
    message = str(error.value)
    assert "ort a" in message and "ort b" in message and "NaN" in message and "trt" not in message


def test_cosine_floor_is_enforced():
    ref = np.arange(1, 9, dtype=np.float32)
    flipped = ref[::-1].copy()
    check = compare("b", [ref], [flipped], 100.0, 0.0, min_cosine=0.999)
    assert check.outputs[0].passed and not check.passed
    assert cosine_similarity(ref, ref) == pytest.approx(1.0)
