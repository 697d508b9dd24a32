"""The comparator: tolerance arithmetic, the scale-free rule, NaN/Inf, shape mismatches, one
raise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attn_export.compare import compare, cosine_similarity, normalized_rms_error, raise_on_failures
from attn_export.errors import VerificationError
from attn_export.tolerances import FP32, Tolerance

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
arrays = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite
)
tolerance = st.floats(0, 1, allow_nan=False)
NO_NRMSE = float("inf")  # isolates the elementwise rule


def tol(atol: float, rtol: float, max_nrmse: float = NO_NRMSE) -> Tolerance:
    return Tolerance(atol, rtol, max_nrmse)


@settings(max_examples=200, deadline=None)
@given(arrays, tolerance, tolerance)
def test_identical_outputs_pass_at_any_tolerance(ref, atol, rtol):
    check = compare("b", [ref], [ref.copy()], tol(atol, rtol, FP32.max_nrmse))
    assert check.passed and check.max_abs_err == 0.0


@settings(max_examples=200, deadline=None)
@given(arrays, st.floats(1e-6, 1.0), tolerance, tolerance)
def test_verdict_is_numpys_allclose_rule(ref, delta, atol, rtol):
    actual = ref.astype(np.float64) + delta
    check = compare("b", [ref], [actual], tol(atol, rtol))
    expected = bool(
        np.all(
            np.abs(actual - ref.astype(np.float64)) <= atol + rtol * np.abs(ref.astype(np.float64))
        )
    )
    assert check.passed == expected
    assert check.max_abs_err == pytest.approx(
        float(np.max(np.abs(actual - ref.astype(np.float64))))
    )


@settings(max_examples=100, deadline=None)
@given(arrays, st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_nan_or_inf_anywhere_fails(ref, bad, data):
    actual = ref.copy()
    index = data.draw(st.integers(0, actual.size - 1))
    actual.flat[index] = bad
    assert not compare("b", [ref], [actual], tol(1e9, 1e9)).passed
    assert not compare(
        "b", [actual], [ref], tol(1e9, 1e9)
    ).passed  # a NaN reference is no pass either


@given(arrays)
def test_shape_mismatch_fails_with_reason(ref):
    check = compare("b", [ref], [np.zeros(ref.shape + (1,), np.float32)], tol(1.0, 1.0))
    assert not check.passed and "shape" in check.outputs[0].problem


def test_output_count_mismatch_fails():
    assert not compare("b", [np.zeros(3)], [np.zeros(3), np.zeros(3)], tol(1, 1)).passed


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError):
        compare("b", [np.zeros(3)], [np.zeros(3)], tol(-1e-4, 1e-4))


def test_all_failures_are_collected_and_raised_once():
    ref = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    bad = [np.full(4, 1.0, np.float32), np.full(4, np.nan, np.float32)]
    checks = [
        compare("ort", ref, bad, FP32, ["a", "b"], "draw 1"),
        compare("trt", ref, ref, FP32, ["a", "b"]),
    ]
    with pytest.raises(VerificationError) as error:
        raise_on_failures(checks)
    message = str(error.value)
    assert (
        "ort a on draw 1" in message
        and "ort b" in message
        and "NaN" in message
        and "trt" not in message
    )


SCALES = [1e-8, 1e-5, 1e-2, 1.0, 1e3, 1e6]


def wrong_graphs(ref: np.ndarray) -> dict:
    """What a broken graph returns instead of ``ref``."""
    half = ref.size // 2
    frozen = ref.copy()
    frozen.flat[half:] = np.maximum(
        ref.flat[half:], 0
    )  # the other branch (a ReLU) on half the inputs
    return {
        "zero": np.zeros_like(ref),
        "constant": np.full_like(ref, ref.mean()),
        "sign-flipped": -ref,
        "frozen branch": frozen,
        "shuffled": np.random.default_rng(1).permutation(ref.ravel()).reshape(ref.shape),
    }


@pytest.mark.parametrize("scale", SCALES)
def test_wrong_graphs_fail_at_any_output_scale(scale):
    ref = (np.random.default_rng(0).standard_normal((4, 64)) * scale).astype(np.float32)
    for kind, actual in wrong_graphs(ref).items():
        check = compare("b", [ref], [actual], FP32)
        assert not check.passed, f"a {kind} graph passed at output scale {scale:g}"
        assert "variation" in check.outputs[0].problem


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("offset", [0.0, 5.0])
def test_float_rounding_passes_at_any_output_scale(scale, offset):
    rng = np.random.default_rng(2)
    ref = ((rng.standard_normal((4, 64)) + offset) * scale).astype(np.float32)
    noisy = ref * (
        1 + rng.standard_normal(ref.shape).astype(np.float32) * 1e-6
    )  # summation-order noise
    assert compare("b", [ref], [noisy], FP32).passed


def test_a_constant_reference_is_judged_by_its_size():
    ref = np.full((3, 3), 2.0, np.float32)
    assert normalized_rms_error(ref, ref + 1e-7) < 1e-3
    assert not compare("b", [ref], [np.zeros_like(ref)], FP32).passed
    assert compare("b", [np.zeros(4, np.float32)], [np.zeros(4, np.float32)], FP32).passed


def test_cosine_is_reported():
    ref = np.arange(1, 9, dtype=np.float32)
    check = compare("b", [ref], [ref[::-1].copy()], tol(100.0, 0.0))
    assert check.outputs[0].cosine == pytest.approx(cosine_similarity(ref, ref[::-1].copy()))
    assert cosine_similarity(ref, ref) == pytest.approx(1.0)
