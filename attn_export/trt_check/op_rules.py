"""One function per op for what a table cannot say (see op_limits.py for what it can).

Rule ids are stable: scripts key on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import numpy as np
from onnx import TensorProto

from .node import Issue, Node, error, warning
from .table import type_name

TOPK_MAX_K = 3840  # K must stay below it (table; NvInfer.h)
EINSUM_REJECTED_CHARS = re.compile(r"[^a-z,\-> .]")  # the parser's Einsum checker
RESIZE_SCALABLE_TRAILING_AXES = {"linear": 3, "cubic": 2}  # with constant scales
# The element types Mod's fmod=0 (Python's %) is rejected for.
_FLOAT_ELEM_TYPES = {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.DOUBLE,
}
# Target types TensorRT's Cast produces.
_CAST_TARGETS = ("FP32", "FP16", "BF16", "DOUBLE", "INT32", "INT64", "UINT8", "BOOL")


def _topk(n: Node) -> Iterator[Issue]:
    k_value = n.value(1) if n.opset >= 10 else np.asarray(n.attr("k", []))
    k = int(k_value.reshape(-1)[0]) if k_value is not None and k_value.size else None
    if k is not None and k >= TOPK_MAX_K:
        yield error("topk-k-limit", f"K={k}: TensorRT's TopK needs K < {TOPK_MAX_K}")
    elif n.opset >= 10 and not n.is_constant(1):
        yield warning(
            "topk-dynamic-k",
            f"K is computed at runtime: TensorRT fails at run time if K >= {TOPK_MAX_K}",
        )
    rank, axis = n.rank(0), n.attr("axis", -1)
    if rank is not None and rank > 4 and axis % rank < rank - 4:
        yield error(
            "topk-axis",
            f"axis {axis} of a rank-{rank} input: TensorRT's TopK "
            "reduces along the last 4 axes only",
        )


def _scatter_elements(n: Node) -> Iterator[Issue]:
    if n.attr("reduction", "none") != "none":
        yield warning(
            "scatterelements-plugin",
            f"reduction={n.attr('reduction')!r} imports "
            "through TensorRT's ScatterElements plugin: load the plugin library",
        )


def _einsum(n: Node) -> Iterator[Issue]:
    equation = n.attr("equation", "")
    rejected = "".join(sorted(set(EINSUM_REJECTED_CHARS.findall(equation))))
    if rejected:
        yield error(
            "einsum-equation",
            f"equation {equation!r} has {rejected!r}: the parser "
            "accepts only a-z , - > . and spaces (no uppercase labels)",
        )


def _resize(n: Node) -> Iterator[Issue]:
    if (
        n.attr("coordinate_transformation_mode") == "tf_half_pixel_for_nn"
        and n.attr("nearest_mode", "round_prefer_floor") != "round_prefer_floor"
    ):
        yield error("resize-nearest-mode", "tf_half_pixel_for_nn needs round_prefer_floor")
    axes = n.attr("axes")
    if axes is not None and len(set(axes)) != len(axes):
        yield error("resize-axes", f"axes {list(axes)} repeat an axis")
    scales_index, sizes_index = (1, None) if n.opset < 11 else (2, 3)
    rank = n.rank(0)
    if n.input(scales_index) and not n.is_constant(scales_index):
        if axes is not None and rank is not None and [a % rank for a in axes] != [*range(rank)]:
            yield error(
                "resize-dynamic-scales-axes",
                f"runtime scales with axes {list(axes)}: "
                f"TensorRT needs axes 0..{rank - 1} in order",
            )
        return
    mode = n.attr("mode", "nearest")
    trailing = RESIZE_SCALABLE_TRAILING_AXES.get(mode)
    factors = _resize_factors(n, scales_index, sizes_index, axes)
    if trailing and factors and any(f != 1.0 for f in factors[:-trailing]):
        yield error(
            "resize-scaled-axes",
            f"{mode} resize with factors {factors}: TensorRT "
            f"rescales only the last {trailing} axes",
        )


def _resize_factors(
    n: Node, scales_index: int, sizes_index: int | None, axes: list[int] | None
) -> list[float] | None:
    """Full-rank scale factors when scales (or sizes and the input shape) are constant."""
    factors, in_shape = n.value(scales_index), n.shape(0)
    if (factors is None or factors.size == 0) and sizes_index is not None:
        sizes = n.value(sizes_index)
        in_dims = in_shape if axes is None or in_shape is None else [in_shape[a] for a in axes]
        if sizes is None or not in_dims or None in in_dims or len(in_dims) != sizes.size:
            return None
        factors = sizes.astype(np.float64) / np.asarray(in_dims, dtype=np.float64)
    if factors is None or factors.size == 0:
        return None
    if axes is None:
        return [float(f) for f in factors.reshape(-1)]
    if in_shape is None:
        return None
    full = [1.0] * len(in_shape)
    for axis, factor in zip(axes, factors.reshape(-1)):
        full[axis % len(in_shape)] = float(factor)
    return full


def _mod(n: Node) -> Iterator[Issue]:
    if n.attr("fmod", 0) == 0 and {n.elem_type(0), n.elem_type(1)} & _FLOAT_ELEM_TYPES:
        yield error(
            "mod-float-fmod0",
            "floating-point Mod with fmod=0 (Python %): TensorRT "
            "takes fmod=0 for integers only; use fmod=1 or Div/Floor/Mul/Sub",
        )


def _pool(n: Node) -> Iterator[Issue]:
    dilations = n.attr("dilations")
    if dilations and any(d != 1 for d in dilations):
        yield error(
            "pool-dilations", f"dilations {list(dilations)}: TensorRT pools with dilation 1 only"
        )
    spatial = len(n.attr("kernel_shape", []))
    if n.op != "LpPool" and spatial > 3:
        yield error(
            "pool-rank",
            f"{spatial}-D pooling: TensorRT pools 2-D or 3-D (1-D through an added axis)",
        )


def _group_norm(n: Node) -> Iterator[Issue]:
    shape, groups = n.shape(0), n.attr("num_groups")
    if shape is not None and len(shape) < 3:
        yield error(
            "groupnorm-rank",
            f"rank-{len(shape)} input: TensorRT's GroupNormalization needs rank >= 3 (N, C, ...)",
        )
    elif shape is not None and shape[1] and groups and shape[1] % groups:
        yield error("groupnorm-groups", f"num_groups={groups} does not divide C={shape[1]}")


def _dropout(n: Node) -> Iterator[Issue]:
    value = n.value(2)
    if value is not None and value.size and bool(value.reshape(-1)[0]):
        yield error("dropout-training-mode", "training_mode is true: inference only")


def _stft(n: Node) -> Iterator[Issue]:
    shape = n.shape(0)
    if shape and shape[-1] == 2:
        yield error("stft-complex", "complex signal (last dim 2): TensorRT's STFT is real-only")


def _eye_like(n: Node) -> Iterator[Issue]:
    shape = n.shape(0)
    if shape is not None and None in shape:
        yield error("eyelike-shape", f"input shape {list(shape)}: EyeLike needs it static")


def _hardmax(n: Node) -> Iterator[Issue]:
    shape = n.shape(0)
    axis = n.attr("axis", -1 if n.opset >= 13 else 1)
    if shape and shape[axis % len(shape)] is None:
        yield error(
            "hardmax-dynamic-axis",
            f"axis {axis} has no static size: TensorRT's Hardmax needs it at build time",
        )


def _deform_conv(n: Node) -> Iterator[Issue]:
    weight_shape = n.shape(1)
    kernel = n.attr("kernel_shape") or (weight_shape[2:] if weight_shape else None)
    if kernel is not None and len(kernel) not in (1, 2):
        yield error("deformconv-form", f"{len(kernel)}-D DeformConv: TensorRT does 1-D/2-D")
    pads = list(n.attr("pads", []))
    if pads[: len(pads) // 2] != pads[len(pads) // 2 :]:
        yield error("deformconv-form", f"pads {pads}: begin and end padding must be equal")


def _attention(n: Node) -> Iterator[Issue]:
    if any(n.input(i) for i in (4, 5, 6)):
        yield error(
            "attention-form",
            "KV-cache inputs (past_key, past_value, nonpad_kv_seqlen) are not imported by TensorRT",
        )


def _constant(n: Node) -> Iterator[Issue]:
    rejected = sorted({"sparse_value", "value_string", "value_strings"} & set(n.attrs))
    if rejected:
        yield error("constant-form", f"{rejected[0]}: TensorRT rejects sparse and string constants")


def _constant_of_shape(n: Node) -> Iterator[Issue]:
    if "value" in n.attrs and n.attr("value").data_type == TensorProto.UINT8:
        yield error("constantofshape-uint8", "a UINT8 fill value is rejected")


def _cast(n: Node) -> Iterator[Issue]:
    target = type_name(n.attr("to", TensorProto.FLOAT))
    if target not in _CAST_TARGETS:
        yield error("cast-target-type", f"Cast to {target}: TensorRT's Cast cannot produce it")


def _rnn(n: Node) -> Iterator[Issue]:
    if n.attr("direction", "forward") != "bidirectional":
        return
    for name in ("activations", "activation_alpha", "activation_beta"):
        values = list(n.attr(name, []))
        if values[: len(values) // 2] != values[len(values) // 2 :]:
            yield error(
                "rnn-bidirectional-activations",
                f"{name} differ between directions: "
                "TensorRT runs the reverse pass with the forward activations",
            )


def _zero_point(n: Node) -> Iterator[Issue]:
    value = n.value(2)
    if value is not None and np.any(value.astype(np.float64) != 0):
        yield error("qdq-zero-point", "non-zero zero point: TensorRT quantizes symmetrically")


def _gather_nd(n: Node) -> Iterator[Issue]:
    rank, batch_dims = n.rank(0), n.attr("batch_dims", 0)
    if rank is not None and batch_dims >= rank - 1:
        yield error(
            "gathernd-batch-dims",
            f"batch_dims={batch_dims} with rank-{rank} data: TensorRT needs batch_dims < rank - 1",
        )


def _if(n: Node) -> Iterator[Issue]:
    ranks = [
        [
            len(o.type.tensor_type.shape.dim) if o.type.tensor_type.HasField("shape") else None
            for o in n.attr(branch).output
        ]
        for branch in ("then_branch", "else_branch")
    ]
    then_ranks, else_ranks = ranks
    if len(then_ranks) != len(else_ranks) or any(
        a is not None and b is not None and a != b for a, b in zip(then_ranks, else_ranks)
    ):
        yield error("if-branches", "then/else branches differ in output count or rank")


RULES: dict[str, Callable[[Node], Iterator[Issue]]] = {
    "TopK": _topk,
    "ScatterElements": _scatter_elements,
    "Einsum": _einsum,
    "Resize": _resize,
    "Mod": _mod,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "GroupNormalization": _group_norm,
    "Dropout": _dropout,
    "STFT": _stft,
    "EyeLike": _eye_like,
    "Hardmax": _hardmax,
    "DeformConv": _deform_conv,
    "Attention": _attention,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Cast": _cast,
    "RNN": _rnn,
    "GRU": _rnn,
    "LSTM": _rnn,
    "QuantizeLinear": _zero_point,
    "DequantizeLinear": _zero_point,
    "GatherND": _gather_nd,
    "If": _if,
}
