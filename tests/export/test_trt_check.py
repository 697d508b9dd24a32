"""The static TensorRT parser check: each rule fires on a graph built to break it, and nothing
fires on clean graphs or on a real export.

Graphs are built with ``onnx.helper``. Each failing case asserts its own rule id and the FAIL
verdict, so a rule that stops firing, or that fires on a clean graph, fails a test here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from attn_export.errors import UsageError
from attn_export.trt_check import (
    DYNAMIC_RULES,
    EXPORT_SHAPES_KEY,
    CheckReport,
    check_model,
    format_report,
    load_op_table,
    record_export_shapes,
)
from tests.builders import build_registered, export_module, export_registered


def tensor(name: str, elem_type: int = T.FLOAT, shape: Sequence[int] | None = (1, 4, 8, 8)):
    return helper.make_tensor_value_info(name, elem_type, shape)


def const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def make(
    nodes, inputs=None, outputs=None, inits=(), opset: int = 17, extra_imports=(), **model_kwargs
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [tensor("x")],
        outputs or [tensor("y", shape=None)],
        initializer=list(inits),
    )
    imports = [helper.make_opsetid("", opset), *extra_imports]
    return helper.make_model(graph, opset_imports=imports, **model_kwargs)


def rules(report: CheckReport) -> set:
    return {f.rule for f in report.findings}


def assert_fails_with(model: onnx.ModelProto, rule: str) -> CheckReport:
    report = check_model(model)
    assert rule in rules(report), format_report(report)
    assert not report.passed and report.to_dict()["passed"] is False
    assert format_report(report).splitlines()[-1].startswith("FAIL")
    return report


def assert_clean(model: onnx.ModelProto) -> CheckReport:
    report = check_model(model)
    assert report.findings == [], format_report(report)
    assert report.passed and format_report(report).startswith("PASS")
    return report


# --- unsupported, unknown and foreign ops -------------------------------------------------
def test_col2im_is_unsupported():
    node = helper.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["y"])
    inits = [const("image_shape", [5, 5]), const("block_shape", [2, 2])]
    report = assert_fails_with(
        make([node], [tensor("x", shape=(1, 36, 16))], inits=inits, opset=18), "unsupported-op"
    )
    assert (report.findings[0].op_type, report.findings[0].severity) == ("Col2Im", "error")


def test_dft_is_unsupported():
    node = helper.make_node("DFT", ["x"], ["y"], onesided=1)
    assert_fails_with(make([node], [tensor("x", shape=(1, 16, 1))]), "unsupported-op")


@pytest.mark.parametrize(
    "op_type, inputs", [("Attention", ["x", "w", "b"]), ("FusedMatMul", ["x", "w"])]
)
def test_com_microsoft_ops_are_rejected(op_type, inputs):
    node = helper.make_node(op_type, inputs, ["y"], domain="com.microsoft")
    model = make(
        [node],
        [tensor(name, shape=None) for name in inputs],
        extra_imports=[helper.make_opsetid("com.microsoft", 1)],
    )
    report = assert_fails_with(model, "custom-domain")
    assert report.findings[0].domain == "com.microsoft"
    assert f"[com.microsoft::{op_type}] custom-domain" in format_report(report)


def test_foreign_op_named_like_a_builtin_is_rejected():
    node = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    model = make([node], extra_imports=[helper.make_opsetid("com.microsoft", 1)])
    report = assert_fails_with(model, "custom-domain")
    assert "built-in importer" in report.findings[0].message


def test_unknown_default_domain_op():
    assert_fails_with(make([helper.make_node("FrobnicateNd", ["x"], ["y"])]), "unknown-op")


def test_op_newer_than_the_table():
    assert "Swish" in load_op_table()["not_in_table"]
    assert_fails_with(make([helper.make_node("Swish", ["x"], ["y"])], opset=24), "op-not-in-table")


# --- opset range --------------------------------------------------------------------------
def test_opset_8_is_below_the_documented_range():
    report = assert_fails_with(
        make([helper.make_node("Relu", ["x"], ["y"])], opset=8), "opset-too-old"
    )
    assert report.opset == 8


def test_opset_above_24_only_warns():
    report = check_model(make([helper.make_node("Relu", ["x"], ["y"])], opset=25))
    assert rules(report) == {"opset-newer-than-documented"} and report.passed


# --- op restrictions ----------------------------------------------------------------------
def topk(k: int, k_from: str = "initializer", **attrs) -> onnx.ModelProto:
    nodes, inits = [], []
    if k_from == "initializer":
        inits.append(const("k", [k]))
    else:
        nodes.append(helper.make_node("Constant", [], ["k"], value=const("v", [k])))
    nodes.append(helper.make_node("TopK", ["x", "k"], ["y", "idx"], axis=-1, **attrs))
    return make(
        nodes,
        [tensor("x", shape=(1, 5000))],
        [tensor("y", shape=None), tensor("idx", T.INT64, None)],
        inits,
    )


def test_topk_unsorted():
    assert_fails_with(topk(4, sorted=0), "topk-unsorted")


@pytest.mark.parametrize("k_from", ["initializer", "constant-node"])
def test_topk_k_at_the_limit(k_from):
    assert_fails_with(topk(3840, k_from), "topk-k-limit")


@pytest.mark.parametrize("k", [4, 3839])
def test_topk_sorted_small_k_passes(k):
    assert_clean(topk(k, "constant-node"))


def test_topk_runtime_k_only_warns():
    nodes = [
        helper.make_node("Shape", ["x"], ["k"], start=1),
        helper.make_node("TopK", ["x", "k"], ["y", "i"]),
    ]
    report = check_model(make(nodes, [tensor("x", shape=(1, 8))]))
    assert rules(report) == {"topk-dynamic-k"} and report.passed


def einsum(equation: str) -> onnx.ModelProto:
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)
    return make([node], [tensor("a", shape=(2, 3, 4)), tensor("b", shape=(2, 4, 5))])


def test_uppercase_einsum_is_rejected():
    assert_fails_with(einsum("bIj,bjk->bIk"), "einsum-equation")


def test_lowercase_einsum_passes():
    assert_clean(einsum("bij, bjk -> bik"))


def scatter(op_type: str, reduction: str) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x", "i", "u"], ["y"], reduction=reduction)
    nd = op_type == "ScatterND"
    inputs = [
        tensor("x", shape=(4, 4)),
        tensor("i", T.INT64, (2, 1) if nd else (1, 4)),
        tensor("u", shape=(2, 4) if nd else (1, 4)),
    ]
    return make([node], inputs, opset=18)


def test_scatternd_with_add_reduction():
    assert_fails_with(scatter("ScatterND", "add"), "scatternd-reduction")
    assert_clean(scatter("ScatterND", "none"))


def test_scatterelements_reduction_only_warns():
    report = check_model(scatter("ScatterElements", "max"))
    assert rules(report) == {"scatterelements-plugin"} and report.passed


def mod(elem_type: int, fmod: int) -> onnx.ModelProto:
    node = helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod)
    return make(
        [node],
        [tensor("a", elem_type, (4,)), tensor("b", elem_type, (4,))],
        [tensor("y", elem_type, None)],
    )


def test_float_mod_needs_fmod_1():
    assert_fails_with(mod(T.FLOAT, 0), "mod-float-fmod0")
    assert_clean(mod(T.FLOAT, 1))
    assert_clean(mod(T.INT32, 0))


def test_mod_input_type_comes_from_shape_inference():
    # "r" is an intermediate tensor with no declared type: only shape inference knows it.
    nodes = [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Mod", ["r", "a"], ["y"])]
    assert_fails_with(make(nodes, [tensor("a", shape=(4,))]), "mod-float-fmod0")


def test_layernorm_with_three_outputs():
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv_std"])
    outputs = [tensor(name, shape=None) for name in ("y", "mean", "inv_std")]
    inits = [const("s", np.ones(8), np.float32), const("b", np.zeros(8), np.float32)]
    assert_fails_with(
        make([node], [tensor("x", shape=(2, 8))], outputs, inits), "layernorm-extra-outputs"
    )


def resize(scales=(1, 1, 2, 2), **attrs) -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)
    return make([node], inits=[const("scales", scales, np.float32)], opset=19)


@pytest.mark.parametrize(
    "attrs, rule",
    [
        ({"coordinate_transformation_mode": "half_pixel_symmetric"}, "resize-coordinate-mode"),
        ({"coordinate_transformation_mode": "tf_crop_and_resize"}, "resize-coordinate-mode"),
        ({"mode": "linear", "antialias": 1}, "resize-antialias"),
        (
            {"coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": "floor"},
            "resize-nearest-mode",
        ),
    ],
)
def test_resize_rejected_modes(attrs, rule):
    assert_fails_with(resize(**attrs), rule)


def test_resize_supported_modes_pass():
    assert_clean(resize(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"))
    assert_clean(resize(mode="cubic", coordinate_transformation_mode="align_corners"))
    assert_clean(
        resize(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    )


def test_cubic_resize_of_a_leading_axis():
    assert_fails_with(resize(scales=(1, 2, 2, 2), mode="cubic"), "resize-scaled-axes")


def test_pool_dilations_and_rank():
    dilated = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])
    assert_fails_with(make([dilated]), "pool-dilations")
    pool_4d = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2, 2, 2])
    assert_fails_with(make([pool_4d], [tensor("x", shape=(1, 1, 4, 4, 4, 4))]), "pool-rank")


def test_reduce_axes_must_be_constant():
    runtime_axes = [
        helper.make_node("Shape", ["x"], ["axes"], start=2, end=3),
        helper.make_node("ReduceMean", ["x", "axes"], ["y"]),
    ]
    assert_fails_with(make(runtime_axes, opset=18), "reduce-dynamic-axes")
    constant_axes = helper.make_node("ReduceMean", ["x", "axes"], ["y"])
    assert_clean(make([constant_axes], inits=[const("axes", [2, 3])], opset=18))


def test_integer_matmul_is_rejected():
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = make(
        [node],
        [tensor("a", T.INT32, (2, 3)), tensor("b", T.INT32, (3, 2))],
        [tensor("y", T.INT32, None)],
    )
    assert_fails_with(model, "integer-input")


def test_types_outside_the_table():
    # The importer enforces the types column only for some ops; elsewhere it is a warning.
    nonzero = helper.make_node("NonZero", ["x"], ["y"])
    report = check_model(make([nonzero], [tensor("x", T.INT64, (4,))]))
    assert rules(report) == {"type-not-in-table"} and report.passed
    reduce_bool = helper.make_node("ReduceSum", ["x"], ["y"])
    assert_fails_with(
        make([reduce_bool], [tensor("x", T.BOOL, (4,))], opset=13), "unsupported-type"
    )


def test_uint8_intermediate_tensor():
    nodes = [
        helper.make_node("Cast", ["x"], ["u"], to=T.UINT8),
        helper.make_node("Cast", ["u"], ["y"], to=T.FLOAT),
    ]
    assert_fails_with(make(nodes), "uint8-intermediate")
    assert_clean(make(nodes[:1], outputs=[tensor("u", T.UINT8, None)]))  # network output: fine


def test_groupnorm_needs_rank_3():
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
    inits = [const("s", np.ones(4), np.float32), const("b", np.zeros(4), np.float32)]
    assert_fails_with(
        make([node], [tensor("x", shape=(2, 4))], inits=inits, opset=21), "groupnorm-rank"
    )


def test_dropout_training_mode_must_be_constant_false():
    node = helper.make_node("Dropout", ["x", "", "train"], ["y"])
    assert_fails_with(
        make([node], [tensor("x"), tensor("train", T.BOOL, ())]), "dropout-training-mode"
    )
    assert_clean(make([node], inits=[numpy_helper.from_array(np.array(False), "train")]))


# --- graph structure: local functions and subgraphs ---------------------------------------
def with_local_function(op_type: str) -> onnx.ModelProto:
    body = helper.make_node(op_type, ["a"], ["b"])
    function = helper.make_function(
        "local", "Block", ["a"], ["b"], [body], [helper.make_opsetid("", 17)]
    )
    call = helper.make_node("Block", ["x"], ["y"], domain="local")
    return make(
        [call],
        [tensor("x", shape=(1, 16, 1))],
        functions=[function],
        extra_imports=[helper.make_opsetid("local", 1)],
    )


def test_local_functions_are_expanded():
    report = assert_fails_with(with_local_function("DFT"), "unsupported-op")
    assert "custom-domain" not in rules(report)  # the call itself is inlined away
    assert_clean(with_local_function("Relu"))


def test_if_branches_are_checked_recursively():
    def branch(name: str, op_type: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op_type, ["x"], [name])], name, [], [tensor(name, shape=None)]
        )

    node = helper.make_node(
        "If",
        ["c"],
        ["y"],
        name="choose",
        then_branch=branch("t", "DFT"),
        else_branch=branch("e", "Relu"),
    )
    model = make([node], [tensor("x", shape=(1, 16, 1)), tensor("c", T.BOOL, ())])
    report = assert_fails_with(model, "unsupported-op")
    assert report.findings[0].node == "choose/then_branch/DFT#0"


# --- clean graphs, a real export, the report, bad files -----------------------------------
def test_clean_conv_relu_matmul_softmax_passes():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["p"]),
        helper.make_node("Softmax", ["p"], ["y"], axis=-1),
    ]
    inits = [
        const("w", np.zeros((4, 4, 3, 3)), np.float32),
        const("m", np.zeros((8, 8)), np.float32),
    ]
    report = assert_clean(make(nodes, inits=inits))
    assert (report.opset, report.table_version) == (17, "10.16")


def test_cbam_export_passes():
    assert_clean(export_registered("cbam"))


def test_report_is_json_and_one_line_per_finding():
    nodes = [
        helper.make_node("DFT", ["x"], ["d"], name="fft"),
        helper.make_node("Col2Im", ["d", "s", "s"], ["y"], name="fold"),
    ]
    model = make(nodes, [tensor("x", shape=(1, 16, 1))], inits=[const("s", [2, 2])], opset=18)
    report = check_model(model)
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["errors"], data["passed"], data["table_version"]) == (2, False, "10.16")
    lines = format_report(report).splitlines()
    assert len(lines) == 3
    assert "fft [DFT] unsupported-op" in lines[0] and "fold [Col2Im] unsupported-op" in lines[1]
    assert lines[2].startswith("FAIL: TensorRT's ONNX parser would reject this model (2 errors")


def test_check_model_accepts_paths(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(
        make([helper.make_node("DFT", ["x"], ["y"])], [tensor("x", shape=(1, 16, 1))]), str(path)
    )
    assert "unsupported-op" in rules(check_model(path))
    assert "unsupported-op" in rules(check_model(str(path)))


@pytest.mark.parametrize("content", [b"\xff\xfe not protobuf \x00\x01", b"plain text\n", b""])
def test_corrupt_files_are_usage_errors(tmp_path, content):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(content)
    with pytest.raises(UsageError, match="not (a readable|an) ONNX model") as info:
        check_model(corrupt)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such ONNX file"):
        check_model(tmp_path / "absent.onnx")


def test_damaged_onnx_files_are_usage_errors(tmp_path):
    """Random bytes, truncated graphs and graphs with flipped bytes: `check` either reads the
    file or says in one line that it cannot (a flipped byte in a name once gave a TypeError)."""
    from tests.conftest import damaged_copies

    module = build_registered("self_attention", d_model=32, d_k=32, d_v=32, h=2)
    original = export_module(module, [(1, 4, 32)] * 3).SerializeToString()
    blobs = damaged_copies(original, seed=7, random_blobs=40, truncated=40, flipped=120)
    assert b"MatMul" in original
    blobs.append(
        original.replace(b"MatMul", b"Ma\x8cMul")
    )  # same length: names that are no longer UTF-8
    path = tmp_path / "damaged.onnx"
    refused = 0
    for blob in blobs:
        path.write_bytes(blob)
        try:
            check_model(path)
        except UsageError as error:
            refused += 1
            assert "\n" not in str(error) and str(path) in str(error)
    assert refused >= 80  # at least the random and truncated ones


# --- dynamic dims: sizes baked into a graph whose inputs are symbolic ----------------------
class BatchBakedView(torch.nn.Module):
    """``x.view(2, C, -1)``: the export batch written into the graph as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, h, w = x.shape
        return x.view(2, c, -1).softmax(-1).view(b, c, h, w)


class LearnedPositions(torch.nn.Module):
    """A (1, 49, C) position table added to (B, N, C) tokens: N can only be 49."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = torch.nn.Parameter(torch.randn(1, 49, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.positions).softmax(-1)


def export_dynamic(
    module: torch.nn.Module, shape: Sequence[int], axes: dict[int, str], record: bool = True
) -> onnx.ModelProto:
    """``module`` exported as the pipeline exports it, symbolic along ``axes`` of its one
    input, with the export shapes recorded in the metadata (``record``)."""
    model = export_module(module, [shape], dynamic_axes=axes)
    if record:
        record_export_shapes(model, {"input": list(shape)})
    return model


def dynamic_findings(report: CheckReport) -> list:
    return [f for f in report.findings if f.rule in DYNAMIC_RULES]


def test_batch_baked_into_a_view_is_caught_from_the_export_shapes():
    report = assert_fails_with(
        export_dynamic(BatchBakedView(), (2, 64, 7, 7), {0: "batch"}), "baked-dynamic-dim"
    )
    baked = next(f for f in report.findings if f.rule == "baked-dynamic-dim")
    assert baked.op_type == "Reshape" and baked.severity == "error"
    assert baked.message == (
        "shape constant [2, 64, -1] holds 2 = the export size of input "
        "'input' dim 0 (batch), which is dynamic"
    )
    text = format_report(report)
    assert f"{baked.node} [Reshape] baked-dynamic-dim: shape constant [2, 64, -1]" in text
    assert text.splitlines()[-1].startswith(
        "FAIL: TensorRT's ONNX parser should accept this "
        "model, but it runs only at its export shapes"
    )
    assert "dynamic: input 'input' dim 0 (batch)" in text.splitlines()[-1]
    assert [asdict_dim for asdict_dim in report.to_dict()["dynamic_dims"]] == [
        {"input": "input", "dim": 0, "symbol": "batch", "export_size": 2}
    ]


def test_batch_baked_into_a_view_is_caught_without_export_shapes():
    model = export_dynamic(BatchBakedView(), (2, 64, 7, 7), {0: "batch"}, record=False)
    report = assert_fails_with(model, "dynamic-dim-dropped")
    assert "baked-dynamic-dim" not in rules(report)  # needs the export sizes
    assert (
        "fixes dim 0 to 2 where its data has input 'input' dim 0 (batch)"
        in report.errors[0].message
    )
    # the same sizes given as an argument instead of metadata
    assert "baked-dynamic-dim" in rules(check_model(model, export_shapes={"input": [2, 64, 7, 7]}))


def test_cbam_exported_with_symbolic_batch_and_size_is_clean():
    model = export_dynamic(
        build_registered("cbam"), (2, 512, 7, 7), {0: "batch", 2: "height", 3: "width"}
    )
    report = assert_clean(model)
    assert [d.symbol for d in report.dynamic_dims] == ["batch", "height", "width"]
    assert [d.export_size for d in report.dynamic_dims] == [2, 7, 7]


def test_a_static_graph_has_no_dynamic_findings():
    module = BatchBakedView()  # baked, but nothing is dynamic, so nothing is wrong
    model = export_dynamic(module, (2, 64, 7, 7), {}, record=True)
    report = assert_clean(model)
    assert report.dynamic_dims == [] and "dynamic" not in format_report(report)


def test_a_token_count_fixed_by_a_position_table():
    model = export_dynamic(LearnedPositions(), (2, 49, 64), {0: "batch", 1: "tokens"})
    report = assert_fails_with(model, "dynamic-dim-fixed")
    fixed = next(f for f in report.findings if f.rule == "dynamic-dim-fixed")
    assert fixed.op_type == "Add"
    assert "input 'input' dim 1 (tokens) meets a constant size 49" in fixed.message


def symbolic(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, T.FLOAT, dims)


def test_a_reshape_to_a_static_shape_drops_the_symbol_and_the_output_comes_out_static():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten")
    model = make(
        [node],
        [symbolic("x", ["batch", 4, 8])],
        [symbolic("y", ["batch", 32])],
        inits=[const("shape", [2, 32])],
    )
    report = check_model(model)
    assert {"dynamic-dim-dropped", "static-output"} <= rules(report) and not report.passed
    static = next(f for f in report.findings if f.rule == "static-output")
    assert static.node == "<output y>" and "comes out static (2, 32)" in static.message


@pytest.mark.parametrize(
    "target, clean", [([0, 2, 16, -1], True), ([-1, 2, 16, 8], True), ([2, 4, 8], False)]
)
def test_reshape_constants_are_judged_where_the_batch_sits(target, clean):
    """A 2 that splits channels (batch exported at 2 too) is no baked batch; a 2 where the
    data's batch dim sits is."""
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="split_heads")
    model = make(
        [node],
        [symbolic("x", ["batch", 32, 8])],
        [symbolic("y", None)],
        inits=[const("shape", target)],
    )
    record_export_shapes(model, {"x": [2, 32, 8]})
    report = check_model(model)
    assert report.passed == clean, format_report(report)
    if not clean:
        assert "baked-dynamic-dim" in rules(report)


@pytest.mark.parametrize(
    "node, inits",
    [
        (
            helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="crop"),
            [const("starts", [0]), const("ends", [7]), const("axes", [2])],
        ),
        (
            helper.make_node("Split", ["x", "sizes"], ["y", "z"], name="halves", axis=2),
            [const("sizes", [3, 4])],
        ),
    ],
)
def test_slice_and_split_constants_holding_the_export_size(node, inits):
    outputs = [symbolic(name, None) for name in node.output]
    model = make([node], [symbolic("x", ["batch", 4, "height", 7])], outputs, inits=inits)
    record_export_shapes(model, {"x": [2, 4, 7, 7]})
    report = check_model(model)
    assert not report.passed, format_report(report)
    assert rules(report) & {"baked-dynamic-dim", "breaks-at-other-size"}
    assert all("height" in f.message for f in dynamic_findings(report))


def test_a_split_that_lost_the_symbol_breaks_at_another_batch():
    """biformer's pattern: (B, 64, 16) flattened to (-1, 16) (the symbol is lost in the -1),
    then split into constant sizes that add up to the export batch's rows."""
    nodes = [
        helper.make_node("Reshape", ["x", "rows"], ["r"], name="flatten"),
        helper.make_node("Split", ["r", "sizes"], ["a", "b"], name="chunks", axis=0),
    ]
    inits = [const("rows", [-1, 16]), const("sizes", [64, 64])]
    model = make(
        nodes,
        [symbolic("x", ["batch", 64, 16])],
        [symbolic("a", None), symbolic("b", None)],
        inits=inits,
    )
    assert check_model(model).passed  # without export sizes nothing shows it
    record_export_shapes(model, {"x": [2, 64, 16]})
    report = assert_fails_with(model, "breaks-at-other-size")
    assert report.errors[0].node == "chunks"
    assert (
        "split sizes [64, 64] (sum 128) cannot split dim 0 of size 192" in report.errors[0].message
    )


def batch_relu() -> onnx.ModelProto:
    """Relu of a (batch, 4) input: one symbolic dim, nothing that could fix it."""
    return make(
        [helper.make_node("Relu", ["x"], ["y"])],
        [symbolic("x", ["batch", 4])],
        [symbolic("y", ["batch", 4])],
    )


def test_export_shapes_are_checked_against_the_graph():
    model = batch_relu()
    with pytest.raises(
        UsageError,
        match="export shape \\(2, 5\\) of 'x' does not fit its graph shape \\(batch, 4\\)",
    ):
        check_model(model, export_shapes={"x": [2, 5]})
    with pytest.raises(UsageError, match="must be positive integers"):
        check_model(model, export_shapes={"x": [0, 4]})
    # a forward argument the graph never reads is not an error (EMSA's unused keys)
    assert check_model(model, export_shapes={"x": [2, 4], "unused": [1]}).passed


@pytest.mark.parametrize("value", ["not json", '{"x": [2]}', '["x"]'])
def test_unreadable_export_shapes_in_the_metadata_only_warn(value):
    model = batch_relu()
    model.metadata_props.add(key=EXPORT_SHAPES_KEY, value=value)
    report = check_model(model)
    assert rules(report) == {"export-shapes-unreadable"} and report.passed
    assert report.dynamic_dims[0].export_size is None


def test_record_export_shapes_replaces_the_previous_record():
    model = batch_relu()
    record_export_shapes(model, {"x": [2, 4]})
    record_export_shapes(model, {"x": [3, 4]})
    entries = [p for p in model.metadata_props if p.key == EXPORT_SHAPES_KEY]
    assert len(entries) == 1 and json.loads(entries[0].value) == {"x": [3, 4]}
    assert check_model(model).dynamic_dims[0].export_size == 3
