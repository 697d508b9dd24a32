"""The op rules a table can say: accepted attribute values, inputs that must be build-time
constants, accepted ranks, and ops that import only their first output.

Rule ids are stable: scripts key on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from onnx import TensorProto

from .node import Issue, Node, error

RESIZE_MODES = ("nearest", "linear", "cubic")  # cubic is imported though the table omits it
RESIZE_COORDINATE_MODES = (
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
)
RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
REDUCE_OPS = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
)
_RANDOM_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
_ONLY_L1_L2 = ("p", 2, (1, 2), "lp-norm-p", "only L1 and L2 are supported")

# op -> [(attribute, default, accepted values, rule id, why)]
ATTRIBUTE_LIMITS: dict[str, list[tuple[str, Any, tuple[Any, ...], str, str]]] = {
    "TopK": [("sorted", 1, (1,), "topk-unsorted", "TensorRT's TopK returns sorted results only")],
    "ScatterND": [
        (
            "reduction",
            "none",
            ("none",),
            "scatternd-reduction",
            "TensorRT's ScatterND takes no reduction",
        )
    ],
    "Resize": [
        ("mode", "nearest", RESIZE_MODES, "resize-mode", "TensorRT does nearest/linear/cubic"),
        (
            "coordinate_transformation_mode",
            "half_pixel",
            RESIZE_COORDINATE_MODES,
            "resize-coordinate-mode",
            "TensorRT takes " + ", ".join(RESIZE_COORDINATE_MODES),
        ),
        (
            "nearest_mode",
            "round_prefer_floor",
            RESIZE_NEAREST_MODES,
            "resize-nearest-mode",
            "TensorRT takes " + ", ".join(RESIZE_NEAREST_MODES),
        ),
        (
            "keep_aspect_ratio_policy",
            "stretch",
            ("stretch",),
            "resize-aspect-policy",
            "only 'stretch' is supported",
        ),
        ("antialias", 0, (0,), "resize-antialias", "TensorRT's resize has no antialiasing"),
    ],
    "Upsample": [
        (
            "mode",
            "nearest",
            ("nearest", "linear", "bilinear"),
            "upsample-mode",
            "Upsample takes nearest, linear or bilinear",
        )
    ],
    "BatchNormalization": [("training_mode", 0, (0,), "batchnorm-training", "inference only")],
    "Dropout": [("is_test", 1, (1,), "dropout-training-mode", "inference only")],  # opset <= 6
    "LpNormalization": [_ONLY_L1_L2],
    "LpPool": [_ONLY_L1_L2],
    "LSTM": [
        ("input_forget", 0, (0,), "lstm-attr", "coupled input/forget is unsupported"),
        ("layout", 0, (0,), "lstm-attr", "only layout 0 is supported"),
    ],
    "RoiAlign": [
        ("mode", "avg", ("avg", "max"), "roialign-attr", "mode must be avg or max"),
        (
            "coordinate_transformation_mode",
            "half_pixel",
            ("half_pixel", "output_half_pixel"),
            "roialign-attr",
            "TensorRT takes half_pixel or output_half_pixel",
        ),
    ],
    "TensorScatter": [("axis", -2, (-2,), "tensorscatter-form", "TensorRT needs axis -2")],
    "Attention": [
        ("softcap", 0.0, (0.0,), "attention-form", "softcap is rejected"),
        ("qk_matmul_output_mode", 0, (0,), "attention-form", "it is rejected"),
        ("softmax_precision", None, (None,), "attention-form", "it is rejected"),
    ],
    **{
        op: [
            (
                "dtype",
                None,
                (None, TensorProto.FLOAT, TensorProto.FLOAT16),
                "random-dtype",
                "only FLOAT or FLOAT16",
            )
        ]
        for op in _RANDOM_OPS
    },
}

# op -> [(input index, what, rule id, severity)]: inputs the parser needs as weights (an
# initializer or a Constant output); "warning" where the changelog says the table is stale.
CONSTANT_INPUTS: dict[str, list[tuple[int, str, str, str]]] = {
    "OneHot": [(1, "depth", "onehot-dynamic-depth", "error")],
    "STFT": [
        (1, "frame_step", "stft-dynamic-input", "error"),
        (2, "window", "stft-dynamic-input", "error"),
    ],
    "Dropout": [(2, "training_mode", "dropout-training-mode", "error")],
    "CumSum": [(1, "axis", "cumsum-dynamic-axis", "warning")],  # dynamic axis since 10.8
    **{op: [(1, "axes", "reduce-dynamic-axes", "error")] for op in REDUCE_OPS},
}

# op -> [(input index, accepted ranks, rule id)]
RANK_LIMITS: dict[str, list[tuple[int, tuple[int, ...], str]]] = {
    "Gemm": [(0, (2,), "gemm-rank"), (1, (2,), "gemm-rank")],
    "GridSample": [(0, (4,), "gridsample-rank")],
    "SpaceToDepth": [(0, (4,), "spacetodepth-rank")],
    "EyeLike": [(0, (2,), "eyelike-shape")],
    "TensorScatter": [(0, (4,), "tensorscatter-form"), (1, (4,), "tensorscatter-form")],
    "Attention": [(i, (4,), "attention-form") for i in range(4)],  # Q, K, V, attn_mask
}

# ops whose importer yields only output 0: declaring more fails even when they are unused
SINGLE_OUTPUT = {
    "LayerNormalization": "layernorm-extra-outputs",
    "MaxPool": "maxpool-indices",
    "BatchNormalization": "batchnorm-extra-outputs",
    "Attention": "attention-form",
}


def limit_rules(n: Node) -> Iterator[Issue]:
    """The four tables above, applied to one node."""
    for attribute, default, accepted, rule, why in ATTRIBUTE_LIMITS.get(n.op, ()):
        value = n.attr(attribute, default)
        if value not in accepted:
            yield error(rule, f"{attribute}={value!r}: {why}")
    for index, what, rule, severity in CONSTANT_INPUTS.get(n.op, ()):
        if n.input(index) and not n.is_constant(index):
            yield Issue(
                rule,
                severity,
                f"{what} ({n.input(index)!r}) is computed at runtime: "
                "TensorRT needs an initializer or Constant",
            )
    for index, ranks, rule in RANK_LIMITS.get(n.op, ()):
        if n.rank(index) not in (None, *ranks):
            yield error(
                rule,
                f"input {index} has rank {n.rank(index)}: TensorRT's {n.op} "
                f"needs rank {' or '.join(map(str, ranks))}",
            )
    extra = [name for name in n.proto.output[1:] if name] if n.op in SINGLE_OUTPUT else []
    if extra:
        yield error(
            SINGLE_OUTPUT[n.op],
            f"declares output(s) {', '.join(extra)}: TensorRT "
            f"imports only the first output of {n.op}",
        )
