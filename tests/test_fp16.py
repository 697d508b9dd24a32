"""The fp16 graph (``--fp16``) and the storage simulation that judges it like a GPU.

Bounds: the fp16 target is cosine >= 0.999 against the fp32 graph at input scales 1, 10
and 100, with >= half of the float weights (elements) in float16 (the project's --fp16
contract). Where a test compares the fp16 graph on ONNX Runtime CPU with the fp32 graph,
it uses the same cosine bound: fp16 storage costs ~2**-11 relative error per tensor, far
below 1 - 0.999.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from attn_export import modules
from attn_export.compare import cosine_similarity
from attn_export.errors import UsageError
from attn_export.export import export_to_onnx, input_names_for
from attn_export.fp16 import (
    DEFAULT_MIN_COSINE,
    DEFAULT_SCALES,
    MIN_FP16_WEIGHT_FRACTION,
    convert_to_fp16,
    simulate_fp16_storage,
)

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


def make_model(nodes, inputs, outputs, initializers=None) -> onnx.ModelProto:
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


def export_registered(name: str) -> onnx.ModelProto:
    """The registry-default graph, with weights drawn from seed 0 as the pipeline does."""
    spec = modules.get_spec(name)
    torch.manual_seed(0)
    module = spec.create().eval()
    inputs = tuple(torch.randn(*s) for s in spec.shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_onnx(module, inputs, input_names_for(len(inputs))).model


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


def io_types(model: onnx.ModelProto) -> set:
    return {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}


# ----------------------------------------------------------------------------- simulation


def test_simulation_sees_the_overflow_that_onnxruntime_cpu_hides():
    # max_rounds=0: the plain full conversion, no islands
    plain = convert_to_fp16(times_1000_then_normalise(), positive_feeds(), max_rounds=0)
    assert plain.fp32_nodes == []
    x100 = {"x": positive_feeds()["x"] * 100}  # a reaches ~4e5 > 65504
    assert np.isfinite(run_ort(plain.model, x100)[0]).all(), (
        "premise: ORT CPU upcasts float16 internally and returns finite values here"
    )
    assert not np.isfinite(simulate_fp16_storage(plain.model, x100)[0]).all()
    assert plain.checks[0].passed  # at x1 even the row sums (~1.5e4) fit float16
    assert not plain.checks[2].finite and not plain.passed


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
    result = convert_to_fp16(times_1000_then_normalise(), positive_feeds())
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
    islands = {n["name"] for n in result.fp32_nodes}
    assert {"center", "shift", "mean"} <= islands, result.fp32_nodes
    assert "scale" not in islands  # the normalised tail stays float16
    assert all(n["reason"].startswith("precision") for n in result.fp32_nodes)


def test_flipped_topk_decisions_get_an_fp32_island():
    # TopK over x + 1000: float16 keeps 0.5 absolute precision there, so near-ties flip and
    # the gathered values change (cosine ~0.99 at x1 without islands).
    model = make_model(
        [
            helper.make_node("Add", ["x", "offset"], ["a"], name="shift"),
            helper.make_node("TopK", ["a", "k"], ["values", "indices"], axis=-1, name="topk"),
            helper.make_node("GatherElements", ["x", "indices"], ["y"], axis=-1, name="gather"),
        ],
        [("x", [4, 64])],
        [("y", [4, 8])],
        {"offset": np.array(1000, np.float32), "k": np.array([8], np.int64)},
    )
    assert convert_to_fp16(model, max_rounds=0).checks[0].cosine < DEFAULT_MIN_COSINE
    result = convert_to_fp16(model)
    assert result.passed, result.reason
    assert [n["name"] for n in result.fp32_nodes] == ["shift", "topk"]  # graph order
    assert result.islands == [["shift", "topk"]]
    assert "decisions flip" in result.fp32_nodes[1]["reason"]


def test_requested_fp32_nodes_are_kept_and_unknown_ones_rejected():
    result = convert_to_fp16(
        times_1000_then_normalise(), positive_feeds(), fp32_nodes=["normalise"], scales=(1.0,)
    )
    assert result.fp32_nodes == [
        {"name": "normalise", "op_type": "Div", "reason": "requested", "round": 0}
    ]
    with pytest.raises(UsageError, match="not in the graph"):
        convert_to_fp16(times_1000_then_normalise(), positive_feeds(), fp32_nodes=["nope"])


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
    first = convert_to_fp16(times_1000_then_normalise(), positive_feeds())
    second = convert_to_fp16(times_1000_then_normalise(), positive_feeds())
    assert first.model.SerializeToString(deterministic=True) == second.model.SerializeToString(
        deterministic=True
    )
    manifest = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    assert manifest["passed"] is True and manifest["reason"] == ""
    assert [c["scale"] for c in manifest["checks"]] == list(DEFAULT_SCALES)
    assert set(manifest["fp32_nodes"][0]) == {"name", "op_type", "reason", "round"}
    assert sorted(n for island in manifest["islands"] for n in island) == sorted(
        n["name"] for n in manifest["fp32_nodes"]
    )


# ----------------------------------------------------------------------------- the zoo


def assert_good_fp16_graph(name: str, fp32_model: onnx.ModelProto, result) -> None:
    """The --fp16 contract, plus: the fp16 graph is valid ONNX that ONNX Runtime runs."""
    assert result.passed, f"{name}: {result.reason}; islands {result.fp32_nodes}"
    assert io_types(result.model) == {FLOAT}
    assert result.fp16_weight_fraction >= MIN_FP16_WEIGHT_FRACTION
    assert [c.scale for c in result.checks] == list(DEFAULT_SCALES)
    assert all(c.finite and c.cosine >= DEFAULT_MIN_COSINE for c in result.checks)
    graph_types(result.model)  # strict type inference: raises on any mixed-type node
    rng = np.random.default_rng(1)
    feeds = {
        v.name: rng.standard_normal(
            [d.dim_value for d in v.type.tensor_type.shape.dim], dtype=np.float32
        )
        for v in fp32_model.graph.input
    }
    for fp16_out, fp32_out in zip(
        run_ort(result.model, feeds), run_ort(fp32_model, feeds), strict=True
    ):
        assert cosine_similarity(fp16_out, fp32_out) >= DEFAULT_MIN_COSINE


def test_cbam_converts_fully_and_runs_on_onnxruntime():
    model = export_registered("cbam")
    result = convert_to_fp16(model)
    assert_good_fp16_graph("cbam", model, result)
    assert result.fp16_weight_fraction == 1.0 and result.fp32_nodes == []
    conv_weights = [i for i in result.model.graph.initializer if len(i.dims) == 4]
    assert conv_weights and {i.data_type for i in conv_weights} == {FLOAT16}


def test_simam_overflows_at_x100_and_gets_an_fp32_island():
    if "simam" not in modules.list_modules():
        pytest.fail("simam is not registered")
    model = export_registered("simam")
    plain = convert_to_fp16(model, max_rounds=0)
    assert [c.finite for c in plain.checks] == [True, True, False]
    result = convert_to_fp16(model)
    assert_good_fp16_graph("simam", model, result)
    assert any(
        n["reason"].startswith("overflow") and "x100" in n["reason"] for n in result.fp32_nodes
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", modules.list_modules())
def test_every_registered_module_has_a_passing_fp16_graph(name):
    model = export_registered(name)
    assert_good_fp16_graph(name, model, convert_to_fp16(model))
