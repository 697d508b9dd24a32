"""The fp16 graph (``--fp16``), the storage simulation that judges it like a GPU, and the
rules that choose its fp32 islands on tuning draws so that they hold on check draws.

Bounds: the fp16 target is cosine >= 0.999 against the fp32 graph at input scales 1, 10
and 100, with >= half of the float weights (elements) in float16 (the project's --fp16
contract), judged on check draws the island search never saw. Where a test compares the
fp16 graph on ONNX Runtime CPU with the fp32 graph, it uses the same cosine bound: fp16
storage costs ~2**-11 relative error per tensor, far below 1 - 0.999. The zoo's modules
across weight seeds: tests/fp16/test_fp16_zoo.py.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.compare import cosine_similarity
from attn_export.errors import UsageError
from attn_export.fp16 import (
    DEFAULT_CHECK_DRAWS,
    DEFAULT_MIN_COSINE,
    DEFAULT_SCALES,
    DEFAULT_TUNING_DRAWS,
    Draw,
    convert_to_fp16,
    simulate_fp16_storage,
)

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


def make_model(nodes, inputs, outputs, initializers=None) -> onnx.ModelProto:
    """A float32 graph; an input or output shape may name symbolic dims ("batch")."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run_ort(model: onnx.ModelProto, feeds) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def times_1000_then_normalise() -> onnx.ModelProto:
    """y = a / sum(a), a = 1000 x: a overflows float16 for |x| > 65.5 (its row sum much
    sooner); y never does."""
    return make_model(
        [
            helper.make_node("Mul", ["x", "k"], ["a"], name="times_1000"),
            helper.make_node("ReduceSum", ["a", "axes"], ["s"], keepdims=1, name="sum"),
            helper.make_node("Div", ["a", "s"], ["y"], name="normalise"),
        ],
        [("x", [4, 16])],
        [("y", [4, 16])],
        {"k": np.array(1000, np.float32), "axes": np.array([1], np.int64)},
    )


def positive_feeds(seed: int = 0) -> dict:
    return {
        "x": np.abs(np.random.default_rng(seed).standard_normal((4, 16), dtype=np.float32)) + 0.1
    }


def positive_draws(*seeds: int) -> list:
    """|N(0, 1)| + 0.1 draws (the graphs that normalise by a sum need positive inputs)."""
    return [Draw(f"positive {s}", positive_feeds(s)) for s in seeds]


def normal_draws(shape, *seeds: int) -> list:
    return [
        Draw(
            f"normal {s}", {"x": np.random.default_rng(s).standard_normal(shape, dtype=np.float32)}
        )
        for s in seeds
    ]


def io_types(model: onnx.ModelProto) -> set:
    return {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}


# ----------------------------------------------------------------------------- simulation


def test_simulation_sees_the_overflow_that_onnxruntime_cpu_hides():
    # max_rounds=0: the plain full conversion, no islands
    plain = convert_to_fp16(
        times_1000_then_normalise(), positive_draws(0), positive_draws(1), max_rounds=0
    )
    assert plain.fp32_nodes == []
    x100 = {"x": positive_feeds()["x"] * 100}  # a reaches ~4e5 > 65504
    assert np.isfinite(run_ort(plain.model, x100)[0]).all(), (
        "premise: ORT CPU upcasts float16 internally and returns finite values here"
    )
    assert not np.isfinite(simulate_fp16_storage(plain.model, x100)[0]).all()
    by_scale = {c.scale: c for c in plain.checks}
    assert by_scale[1.0].passed  # at x1 even the row sums (~1.5e4) fit float16
    assert not by_scale[100.0].finite and not plain.passed


def test_simulation_rounds_every_float16_tensor():
    # y = (x + 1) - 1: in float16 storage x + 1 keeps 11 significant bits, so y = x rounded to
    # a multiple of 2**-10 near 1 (x in [0, 1)); fp32 math inside each node keeps x exactly.
    model = make_model(
        [
            helper.make_node("Cast", ["x"], ["x16"], to=FLOAT16, name="to16"),
            helper.make_node("Add", ["x16", "one"], ["a"], name="add"),
            helper.make_node("Sub", ["a", "one"], ["b"], name="sub"),
            helper.make_node("Cast", ["b"], ["y"], to=FLOAT, name="to32"),
        ],
        [("x", [8])],
        [("y", [8])],
        {"one": np.array(1, np.float16)},
    )
    x = np.linspace(0.0, 0.999, 8, dtype=np.float32)
    expected = ((x.astype(np.float16) + np.float16(1)) - np.float16(1)).astype(np.float32)
    np.testing.assert_array_equal(simulate_fp16_storage(model, {"x": x})[0], expected)


def test_simulation_of_an_fp32_graph_is_the_fp32_graph():
    model = times_1000_then_normalise()
    feeds = positive_feeds()
    np.testing.assert_array_equal(simulate_fp16_storage(model, feeds)[0], run_ort(model, feeds)[0])


# ----------------------------------------------------------------------------- islands


def test_overflow_gets_an_fp32_island_with_reasons():
    result = convert_to_fp16(times_1000_then_normalise(), positive_draws(0, 1), positive_draws(2))
    assert result.passed, result.reason
    islands = {n["name"]: n for n in result.fp32_nodes}
    assert "times_1000" in islands and islands["times_1000"]["reason"].startswith("overflow")
    assert {n["op_type"] for n in result.fp32_nodes} <= {"Mul", "ReduceSum", "Div"}
    assert io_types(result.model) == {FLOAT}


def test_cancellation_before_a_normalisation_gets_an_fp32_island():
    # Decomposed layer norm of x + 1000: in float16, x + 1000 keeps only 0.5 absolute
    # precision, so x - mean(x) is mostly rounding noise (cosine ~0.98 without islands).
    gamma = np.linspace(0.5, 1.5, 64, dtype=np.float32)
    model = make_model(
        [
            helper.make_node("Add", ["x", "offset"], ["a"], name="shift"),
            helper.make_node("ReduceMean", ["a"], ["mu"], axes=[-1], name="mean"),
            helper.make_node("Sub", ["a", "mu"], ["d"], name="center"),
            helper.make_node("Mul", ["d", "d"], ["d2"], name="square"),
            helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1], name="variance"),
            helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
            helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"),
            helper.make_node("Div", ["d", "sd"], ["n"], name="normalise"),
            helper.make_node("Mul", ["n", "gamma"], ["y"], name="scale"),
        ],
        [("x", [2, 64])],
        [("y", [2, 64])],
        {"offset": np.array(1000, np.float32), "eps": np.array(1e-5, np.float32), "gamma": gamma},
    )
    plain = convert_to_fp16(model, max_rounds=0)
    assert plain.checks[0].cosine < DEFAULT_MIN_COSINE  # the failure is real
    result = convert_to_fp16(model)
    assert result.passed, result.reason
    reasons = {n["name"]: n["reason"] for n in result.fp32_nodes}
    assert {"center", "shift", "mean"} <= set(reasons), result.fp32_nodes
    assert "scale" not in reasons  # the normalised tail stays float16
    assert all(reasons[n].startswith("precision") for n in ("center", "shift", "mean"))


def topk_of_shifted_scores() -> onnx.ModelProto:
    """TopK over x + 1000: float16 keeps 0.5 absolute precision there, so near-ties flip and
    the gathered values change."""
    return make_model(
        [
            helper.make_node("Add", ["x", "offset"], ["a"], name="shift"),
            helper.make_node("TopK", ["a", "k"], ["values", "indices"], axis=-1, name="topk"),
            helper.make_node("GatherElements", ["x", "indices"], ["y"], axis=-1, name="gather"),
        ],
        [("x", [4, 64])],
        [("y", [4, 8])],
        {"offset": np.array(1000, np.float32), "k": np.array([8], np.int64)},
    )


def test_margin_rule_keeps_a_topk_and_its_scores_in_fp32_before_any_flip_is_seen():
    # The tuning draw's scores are 1000.3 + whole numbers: float16 (step 0.5) rounds them all
    # by +0.2, so no choice flips on it, yet every margin (1.0) is within 4x the rounding
    # error (0.2 + 0.2). Judged by flips, the tuning draw sees nothing wrong; the normal check
    # draws, whose near-ties float16 does flip, fail. The margin rule keeps the scores fp32.
    rows = [np.random.default_rng(r).permutation(64) for r in range(4)]
    spaced = Draw("spaced", {"x": (np.stack(rows) + 0.3).astype(np.float32)})
    checks = normal_draws((4, 64), 1, 2, 3)
    plain = convert_to_fp16(topk_of_shifted_scores(), [spaced], checks, scales=(1.0,), max_rounds=0)
    assert all(c.passed for c in plain.tuning)  # premise: no flip on the tuning draw
    assert not plain.passed and min(c.cosine for c in plain.checks) < DEFAULT_MIN_COSINE

    result = convert_to_fp16(topk_of_shifted_scores(), [spaced], checks, scales=(1.0,))
    assert result.passed, result.reason
    assert [n["name"] for n in result.fp32_nodes] == ["shift", "topk"]  # graph order
    assert result.islands == [["shift", "topk"]]
    assert all(n["reason"].startswith("decision") for n in result.fp32_nodes)
    assert "margin within 4x the float16 error" in result.fp32_nodes[1]["reason"]


def test_flipped_topk_decisions_get_an_fp32_island_at_every_scale():
    model = topk_of_shifted_scores()
    assert convert_to_fp16(model, max_rounds=0).checks[0].cosine < DEFAULT_MIN_COSINE
    result = convert_to_fp16(model)
    assert result.passed, result.reason
    assert result.islands == [["shift", "topk"]]


def squared_then_scaled(k: float) -> onnx.ModelProto:
    """y = k x^2 / 1e4: k x^2 grows with the square of the input scale."""
    return make_model(
        [
            helper.make_node("Mul", ["x", "x"], ["square"], name="square"),
            helper.make_node("Mul", ["square", "k"], ["big"], name="times_k"),
            helper.make_node("Div", ["big", "d"], ["y"], name="shrink"),
        ],
        [("x", [4, 16])],
        [("y", [4, 16])],
        {"k": np.array(k, np.float32), "d": np.array(1e4, np.float32)},
    )


def test_growing_tensors_are_judged_on_their_growth_not_one_draws_peak():
    # k x^2 at x100 peaks at ~2.3e4 on the tuning draws: it fits float16, but it grows as
    # scale^2, so inputs twice as large (the check draw: the tuning draw doubled) overflow it.
    tuning = normal_draws((4, 16), 0)
    k = 2.3e4 / (1e4 * float(np.max(tuning[0].feeds["x"] ** 2)))
    doubled = [Draw("doubled", {"x": tuning[0].feeds["x"] * 2})]
    plain = convert_to_fp16(squared_then_scaled(k), tuning, doubled, max_rounds=0)
    assert all(c.passed for c in plain.tuning)
    assert not plain.passed and not [c for c in plain.checks if c.scale == 100][0].finite

    result = convert_to_fp16(squared_then_scaled(k), tuning, doubled)
    assert result.passed, result.reason
    reasons = {n["name"]: n["reason"] for n in result.fp32_nodes}
    assert "grows as scale^2.0" in reasons["times_k"] and reasons["times_k"].startswith(
        "overflow risk"
    )
    assert "shrink" in reasons  # its reader, which would take k x^2 in as float16


def test_the_verdict_comes_from_check_draws_only():
    # Tuned on small inputs, where 1000 x fits float16; the check draw's 1000 x does not.
    small = [Draw("small", {"x": positive_feeds(0)["x"] * 0.01})]
    large = [Draw("large", {"x": positive_feeds(1)["x"] * 100})]
    result = convert_to_fp16(times_1000_then_normalise(), small, large, scales=(1.0,))
    assert result.fp32_nodes == [] and all(c.passed for c in result.tuning)
    assert not result.passed and not result.checks[0].finite
    assert result.reason.startswith("check x1 (large): non-finite output")
    manifest = result.to_dict()
    assert manifest["tuning"]["passed"] and not manifest["check"]["passed"]
    assert manifest["tuning"]["draws"] == ["small"] and manifest["check"]["draws"] == ["large"]


def test_requested_fp32_nodes_are_kept_and_unknown_ones_rejected():
    result = convert_to_fp16(
        times_1000_then_normalise(),
        positive_draws(0),
        positive_draws(1),
        fp32_nodes=["normalise"],
        scales=(1.0,),
    )
    assert result.fp32_nodes == [
        {"name": "normalise", "op_type": "Div", "reason": "requested", "round": 0}
    ]
    with pytest.raises(UsageError, match="not in the graph"):
        convert_to_fp16(times_1000_then_normalise(), positive_draws(0), fp32_nodes=["nope"])


# ----------------------------------------------------------------------------- draws


def dynamic_batch_model() -> onnx.ModelProto:
    return make_model(
        [helper.make_node("Mul", ["x", "w"], ["y"], name="scale")],
        [("x", ["batch", 16])],
        [("y", ["batch", 16])],
        {"w": np.linspace(-1, 1, 16, dtype=np.float32)},
    )


def test_symbolic_dims_need_the_callers_draws_which_may_differ_in_shape():
    with pytest.raises(UsageError, match="pass tuning draws"):
        convert_to_fp16(dynamic_batch_model())
    one, eight = normal_draws((1, 16), 0), normal_draws((8, 16), 1)
    with pytest.raises(UsageError, match="pass check draws"):
        convert_to_fp16(dynamic_batch_model(), one)
    result = convert_to_fp16(dynamic_batch_model(), one + eight, normal_draws((3, 16), 2))
    assert result.passed, result.reason
    assert result.to_dict()["tuning"]["draws"] == ["normal 0", "normal 1"]
    assert len(result.tuning) == 2 * len(DEFAULT_SCALES)


def test_draws_that_do_not_fit_the_graph_are_usage_errors():
    model = times_1000_then_normalise()
    with pytest.raises(UsageError, match=r"draw 'bad': input 'x' has shape \(4, 15\)"):
        convert_to_fp16(model, [Draw("bad", {"x": np.ones((4, 15), np.float32)})])
    with pytest.raises(UsageError, match="draw 'empty' lacks graph inputs: x"):
        convert_to_fp16(model, [Draw("empty", {})])
    with pytest.raises(UsageError, match="no tuning draws"):
        convert_to_fp16(model, [])


def test_a_plain_feeds_mapping_is_one_tuning_draw():
    result = convert_to_fp16(times_1000_then_normalise(), positive_feeds(0), positive_draws(1))
    assert result.to_dict()["tuning"]["draws"] == ["given feeds"] and result.passed


def test_default_draws_tune_and_check_on_different_seeds():
    result = convert_to_fp16(topk_of_shifted_scores(), seed=7)
    tuning, check = result.to_dict()["tuning"], result.to_dict()["check"]
    assert (
        len(tuning["draws"]) == DEFAULT_TUNING_DRAWS and len(check["draws"]) == DEFAULT_CHECK_DRAWS
    )
    assert not set(tuning["draws"]) & set(check["draws"])
    assert [s["scale"] for s in check["per_scale"]] == list(DEFAULT_SCALES)
    assert len(result.checks) == DEFAULT_CHECK_DRAWS * len(DEFAULT_SCALES)


# ----------------------------------------------------------------------------- typing


def graph_types(model: onnx.ModelProto) -> dict:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {i.name: i.data_type for i in inferred.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    return types


def test_blocked_output_node_and_shared_initializer_stay_correctly_typed():
    # "w" feeds an fp32 node and an fp16 node; the graph output comes from the fp32 node.
    w = np.linspace(-1, 1, 16, dtype=np.float32)
    model = make_model(
        [
            helper.make_node("Mul", ["x", "w"], ["h"], name="fp16_mul"),
            helper.make_node("Add", ["h", "w"], ["y"], name="fp32_add"),
        ],
        [("x", [4, 16])],
        [("y", [4, 16])],
        {"w": w},
    )
    result = convert_to_fp16(model, fp32_nodes=["fp32_add"], scales=(1.0,))
    assert io_types(result.model) == {FLOAT}
    types = graph_types(result.model)  # strict inference raises on any type mismatch
    assert types["w"] == FLOAT16 and types["w/fp32"] == FLOAT and types["h"] == FLOAT16
    x = np.random.default_rng(0).standard_normal((4, 16), dtype=np.float32)
    assert (
        cosine_similarity(run_ort(result.model, {"x": x})[0], run_ort(model, {"x": x})[0])
        >= DEFAULT_MIN_COSINE
    )


def test_schema_fixed_float32_inputs_and_cast_targets():
    # Resize's scales must stay float32; a Cast(to=FLOAT) inside the fp16 region must become
    # Cast(to=FLOAT16) or the Div after it would mix types. rtol 2**-10: two float16
    # roundings (x, then y) on ORT CPU.
    model = make_model(
        [
            helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest", name="resize"),
            helper.make_node("Shape", ["r"], ["shape"], name="shape"),
            helper.make_node("Cast", ["shape"], ["shape_f"], to=FLOAT, name="to_float"),
            helper.make_node("ReduceMax", ["shape_f"], ["h"], keepdims=1, name="largest_dim"),
            helper.make_node("Div", ["r", "h"], ["y"], name="divide"),
        ],
        [("x", [1, 2, 3, 3])],
        [("y", [1, 2, 6, 6])],
        {"scales": np.array([1, 1, 2, 2], np.float32)},
    )
    result = convert_to_fp16(model, scales=(1.0,))
    types = graph_types(result.model)
    assert types["scales"] == FLOAT and types["r"] == FLOAT16 and types["shape_f"] == FLOAT16
    assert result.passed, result.reason
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3), dtype=np.float32)
    np.testing.assert_allclose(
        run_ort(result.model, {"x": x})[0], run_ort(model, {"x": x})[0], rtol=2**-10, atol=0
    )


def test_conversion_is_deterministic_and_manifest_is_json():
    first = convert_to_fp16(times_1000_then_normalise(), positive_draws(0, 1), positive_draws(2))
    second = convert_to_fp16(times_1000_then_normalise(), positive_draws(0, 1), positive_draws(2))
    assert first.model.SerializeToString(deterministic=True) == second.model.SerializeToString(
        deterministic=True
    )
    manifest = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    assert manifest["passed"] is True and manifest["reason"] == ""
    assert [c["scale"] for c in manifest["checks"]] == list(DEFAULT_SCALES)
    assert [c["draw"] for c in manifest["checks"]] == ["positive 2"] * len(DEFAULT_SCALES)
    for part, draws in (("tuning", ["positive 0", "positive 1"]), ("check", ["positive 2"])):
        assert manifest[part]["draws"] == draws and manifest[part]["passed"] is True
        assert [s["scale"] for s in manifest[part]["per_scale"]] == list(DEFAULT_SCALES)
        assert all(s["worst_cosine"] >= DEFAULT_MIN_COSINE for s in manifest[part]["per_scale"])
    assert set(manifest["fp32_nodes"][0]) == {"name", "op_type", "reason", "round"}
    assert sorted(n for island in manifest["islands"] for n in island) == sorted(
        n["name"] for n in manifest["fp32_nodes"]
    )
