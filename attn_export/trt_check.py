"""Static prediction of the TensorRT ONNX parser's verdict, node by node, without TensorRT.

``attn-export check FILE.onnx`` runs here. The facts come from the TensorRT 10.16 operator
table shipped in ``attn_export/data/trt_onnx_ops.json`` (``data/NOTES.md`` gives its
provenance): which ops the parser imports, for which element types, and the restrictions that
the graph alone decides (attributes, constant inputs, ranks, types from ONNX shape inference).
What only a real build can tell (kernels, runtime shape values, registered plugins) is out of
reach, so PASS is a prediction, not a guarantee.

Parser behaviour mirrored (onnx-tensorrt ``ModelImporter.cpp``, ``onnxOpCheckers.cpp``): nodes
are dispatched on ``op_type`` alone, whatever their domain; an op without a built-in importer
is looked up as a plugin, which stock TensorRT does not have; local functions are expanded;
``If``/``Loop``/``Scan`` bodies are parsed like the main graph; only initializers and
``Constant`` outputs are build-time constants.

Dynamic dims. A graph whose inputs have symbolic dims (``dim_param``) parses either way, but
runs only at its export shapes if the exporter baked a size into it. ONNX shape inference
(with data propagation, symbols flowing as ``dim_param``) finds where a symbol meets a constant
size; the export sizes recorded under :data:`EXPORT_SHAPES_KEY` in the model's metadata (or
passed as ``export_shapes``) find shape constants that hold one. Rules, all errors:
``baked-dynamic-dim`` (a Reshape/Expand/Tile/Slice/Resize/Split constant holds the export size
where its data has that symbol; needs export sizes), ``dynamic-dim-dropped`` (a shape op
turns a symbolic dim static), ``dynamic-dim-fixed`` (a symbol meets a constant size in a
broadcast, Concat or MatMul: this is also where a baked ConstantOfShape or constant tensor
shows), ``breaks-at-other-size`` (inferred again with each dynamic dim at another size, a
Reshape or Split constant no longer fits; needs export sizes) and ``static-output``.
Size-1 export sizes are never matched (every unsqueeze holds a 1): export at sizes > 1.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from .errors import UsageError

DEFAULT_DOMAINS = ("", "ai.onnx")
TOPK_MAX_K = 3840  # K must stay below it (table; NvInfer.h)
EINSUM_REJECTED_CHARS = re.compile(r"[^a-z,\-> .]")  # the parser's Einsum checker
RESIZE_MODES = ("nearest", "linear", "cubic")  # cubic is imported though the table omits it
RESIZE_COORDINATE_MODES = (
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
)
RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
RESIZE_SCALABLE_TRAILING_AXES = {"linear": 3, "cubic": 2}  # with constant scales
SHAPE_INFERENCE_MAX_KEPT_ELEMENTS = 64  # larger initializers are weights, not shape operands

# ONNX element type -> the table's type name; a type absent here has no TensorRT equivalent.
_TABLE_TYPE_NAMES = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
    TensorProto.INT4: "INT4",
    TensorProto.FLOAT8E4M3FN: "FP8",
    TensorProto.FLOAT4E2M1: "FP4",
}
_INTEGER_TYPES = {
    "INT4",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT4",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}
_FLOAT_ELEM_TYPES = {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.DOUBLE,
}
# Inputs whose type the table's "types" column governs (default: input 0; None: all inputs).
# Control flow is skipped: its inputs are trip counts, conditions and loop-carried state.
_TYPED_INPUTS: dict[str, tuple[int, ...] | None] = {
    "MatMul": (0, 1),
    "Gemm": (0, 1),
    "Conv": (0, 1),
    "ConvTranspose": (0, 1),
    "Einsum": None,
    "Attention": (0, 1, 2),
    "Where": (1, 2),
    "If": (),
    "Loop": (),
    "Scan": (),
}
# The types column documents; the importer enforces it only for these ops (NOTES.md, INT64
# section) and rejects _TYPES_REJECTED (table extras). Elsewhere an unlisted type only warns.
_TYPE_ENFORCED_OPS = {"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose", "Softmax"}
_REDUCE_OPS = (
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
_TYPES_REJECTED = {op: {"BOOL", "UINT8"} for op in ("Resize", *_REDUCE_OPS)}


@dataclass(frozen=True)
class DynamicDim:
    """One symbolic dim of a graph input, and the size it was exported at (None: unknown)."""

    input: str
    dim: int
    symbol: str
    export_size: int | None = None

    def describe(self) -> str:
        return f"input {self.input!r} dim {self.dim} ({self.symbol})"


@dataclass(frozen=True)
class Finding:
    """One reason the parser would reject (error) or may mishandle (warning) one node."""

    node: str
    op_type: str
    domain: str
    rule: str
    message: str
    severity: str  # "error" | "warning"


@dataclass
class CheckReport:
    """Every finding for one model, and what the model was checked against."""

    findings: list[Finding] = field(default_factory=list)
    opset: int | None = None
    table_version: str = ""
    #: the graph inputs' symbolic dims, with their export sizes where known
    dynamic_dims: list[DynamicDim] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "table_version": self.table_version,
            "opset": self.opset,
            "passed": self.passed,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
            "dynamic_dims": [asdict(d) for d in self.dynamic_dims],
        }


@functools.lru_cache(maxsize=1)
def load_op_table() -> dict[str, Any]:
    """The operator table shipped in the package, parsed once per process."""
    resource = importlib.resources.files("attn_export").joinpath("data", "trt_onnx_ops.json")
    return json.loads(resource.read_text(encoding="utf-8"))


class _Issue(NamedTuple):
    rule: str
    severity: str
    message: str


def _error(rule: str, message: str) -> _Issue:
    return _Issue(rule, "error", message)


def _warning(rule: str, message: str) -> _Issue:
    return _Issue(rule, "warning", message)


class _Scope:
    """Types, shapes and constants of one graph's tensor names; outer graphs via ``parent``."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        parent: _Scope | None,
        inferred: Sequence[onnx.ValueInfoProto] = (),
    ) -> None:
        self.parent = parent
        self.types: dict[str, tuple[int, tuple[int | None, ...] | None]] = {}
        # Values stay protos until a rule asks (weights can be large); None: value unknown.
        self.constants: dict[str, onnx.TensorProto | onnx.NodeProto | None] = {}
        self.outputs = {o.name for o in graph.output}
        for info in (*graph.input, *graph.value_info, *inferred, *graph.output):
            tensor_type = info.type.tensor_type
            if info.type.HasField("tensor_type") and tensor_type.elem_type:
                dims = None
                if tensor_type.HasField("shape"):
                    dims = tuple(
                        d.dim_value if d.HasField("dim_value") else None
                        for d in tensor_type.shape.dim
                    )
                self.types[info.name] = (tensor_type.elem_type, dims)
        for init in graph.initializer:
            self.types[init.name] = (init.data_type, tuple(init.dims))
            self.constants[init.name] = init
        for sparse in graph.sparse_initializer:
            self.constants[sparse.values.name] = None
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.output:
                self.constants[node.output[0]] = node

    def _find(self, table: str, name: str) -> tuple[bool, Any]:
        scope: _Scope | None = self
        while scope is not None:
            entries = getattr(scope, table)
            if name in entries:
                return True, entries[name]
            scope = scope.parent
        return False, None

    def lookup(self, table: str, name: str) -> Any:
        return self._find(table, name)[1]

    def is_constant(self, name: str) -> bool:
        return self._find("constants", name)[0]

    def is_graph_output(self, name: str) -> bool:
        # The parser collects the outputs of every graph it parses, subgraphs included.
        scope: _Scope | None = self
        while scope is not None and name not in scope.outputs:
            scope = scope.parent
        return scope is not None


def _tensor_value(tensor: onnx.TensorProto) -> np.ndarray | None:
    # External data is not loaded: the tensor is still a constant, its value just unknown.
    return None if tensor.data_location == TensorProto.EXTERNAL else numpy_helper.to_array(tensor)


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            return _tensor_value(value)
        if attr.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    return None  # sparse or string forms: the Constant rule rejects them


class _Node:
    """A node as a rule sees it: attributes with defaults, input types, shapes and constants."""

    def __init__(self, node: onnx.NodeProto, scope: _Scope, opset: int) -> None:
        self.proto = node
        self.op = node.op_type
        self.scope = scope
        self.opset = opset
        self.attrs = {a.name: a for a in node.attribute}

    def attr(self, name: str, default: Any = None) -> Any:
        if name not in self.attrs:
            return default
        value = helper.get_attribute_value(self.attrs[name])
        return value.decode() if isinstance(value, bytes) else value

    def input(self, index: int) -> str:
        return self.proto.input[index] if index < len(self.proto.input) else ""

    def _type(self, index: int) -> tuple[int, tuple[int | None, ...] | None] | None:
        return self.scope.lookup("types", self.input(index)) if self.input(index) else None

    def elem_type(self, index: int) -> int | None:
        entry = self._type(index)
        return entry[0] if entry else None

    def shape(self, index: int) -> tuple[int | None, ...] | None:
        entry = self._type(index)
        return entry[1] if entry else None

    def rank(self, index: int) -> int | None:
        shape = self.shape(index)
        return None if shape is None else len(shape)

    def is_constant(self, index: int) -> bool:
        return bool(self.input(index)) and self.scope.is_constant(self.input(index))

    def value(self, index: int) -> np.ndarray | None:
        found = self.scope.lookup("constants", self.input(index)) if self.input(index) else None
        if isinstance(found, onnx.NodeProto):
            return _constant_node_value(found)
        return None if found is None else _tensor_value(found)


# ------------------------------------------------------------------------------------------
# Op rules: four tables (attribute values, constant inputs, ranks, single output), then one
# function per op for what a table cannot say. Rule ids are stable: scripts key on them.
# ------------------------------------------------------------------------------------------
_RANDOM_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
_ONLY_L1_L2 = ("p", 2, (1, 2), "lp-norm-p", "only L1 and L2 are supported")

# op -> [(attribute, default, accepted values, rule id, why)]
_ATTRIBUTE_LIMITS: dict[str, list[tuple[str, Any, tuple[Any, ...], str, str]]] = {
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
_CONSTANT_INPUTS: dict[str, list[tuple[int, str, str, str]]] = {
    "OneHot": [(1, "depth", "onehot-dynamic-depth", "error")],
    "STFT": [
        (1, "frame_step", "stft-dynamic-input", "error"),
        (2, "window", "stft-dynamic-input", "error"),
    ],
    "Dropout": [(2, "training_mode", "dropout-training-mode", "error")],
    "CumSum": [(1, "axis", "cumsum-dynamic-axis", "warning")],  # dynamic axis since 10.8
    **{op: [(1, "axes", "reduce-dynamic-axes", "error")] for op in _REDUCE_OPS},
}

# op -> [(input index, accepted ranks, rule id)]
_RANK_LIMITS: dict[str, list[tuple[int, tuple[int, ...], str]]] = {
    "Gemm": [(0, (2,), "gemm-rank"), (1, (2,), "gemm-rank")],
    "GridSample": [(0, (4,), "gridsample-rank")],
    "SpaceToDepth": [(0, (4,), "spacetodepth-rank")],
    "EyeLike": [(0, (2,), "eyelike-shape")],
    "TensorScatter": [(0, (4,), "tensorscatter-form"), (1, (4,), "tensorscatter-form")],
    "Attention": [(i, (4,), "attention-form") for i in range(4)],  # Q, K, V, attn_mask
}

# ops whose importer yields only output 0: declaring more fails even when they are unused
_SINGLE_OUTPUT = {
    "LayerNormalization": "layernorm-extra-outputs",
    "MaxPool": "maxpool-indices",
    "BatchNormalization": "batchnorm-extra-outputs",
    "Attention": "attention-form",
}


def _table_rules(n: _Node) -> Iterator[_Issue]:
    for attribute, default, accepted, rule, why in _ATTRIBUTE_LIMITS.get(n.op, ()):
        value = n.attr(attribute, default)
        if value not in accepted:
            yield _error(rule, f"{attribute}={value!r}: {why}")
    for index, what, rule, severity in _CONSTANT_INPUTS.get(n.op, ()):
        if n.input(index) and not n.is_constant(index):
            yield _Issue(
                rule,
                severity,
                f"{what} ({n.input(index)!r}) is computed at runtime: "
                "TensorRT needs an initializer or Constant",
            )
    for index, ranks, rule in _RANK_LIMITS.get(n.op, ()):
        if n.rank(index) not in (None, *ranks):
            yield _error(
                rule,
                f"input {index} has rank {n.rank(index)}: TensorRT's {n.op} "
                f"needs rank {' or '.join(map(str, ranks))}",
            )
    extra = [name for name in n.proto.output[1:] if name] if n.op in _SINGLE_OUTPUT else []
    if extra:
        yield _error(
            _SINGLE_OUTPUT[n.op],
            f"declares output(s) {', '.join(extra)}: TensorRT "
            f"imports only the first output of {n.op}",
        )


def _topk(n: _Node) -> Iterator[_Issue]:
    k_value = n.value(1) if n.opset >= 10 else np.asarray(n.attr("k", []))
    k = int(k_value.reshape(-1)[0]) if k_value is not None and k_value.size else None
    if k is not None and k >= TOPK_MAX_K:
        yield _error("topk-k-limit", f"K={k}: TensorRT's TopK needs K < {TOPK_MAX_K}")
    elif n.opset >= 10 and not n.is_constant(1):
        yield _warning(
            "topk-dynamic-k",
            f"K is computed at runtime: TensorRT fails at run time if K >= {TOPK_MAX_K}",
        )
    rank, axis = n.rank(0), n.attr("axis", -1)
    if rank is not None and rank > 4 and axis % rank < rank - 4:
        yield _error(
            "topk-axis",
            f"axis {axis} of a rank-{rank} input: TensorRT's TopK "
            "reduces along the last 4 axes only",
        )


def _scatter_elements(n: _Node) -> Iterator[_Issue]:
    if n.attr("reduction", "none") != "none":
        yield _warning(
            "scatterelements-plugin",
            f"reduction={n.attr('reduction')!r} imports "
            "through TensorRT's ScatterElements plugin: load the plugin library",
        )


def _einsum(n: _Node) -> Iterator[_Issue]:
    equation = n.attr("equation", "")
    rejected = "".join(sorted(set(EINSUM_REJECTED_CHARS.findall(equation))))
    if rejected:
        yield _error(
            "einsum-equation",
            f"equation {equation!r} has {rejected!r}: the parser "
            "accepts only a-z , - > . and spaces (no uppercase labels)",
        )


def _resize(n: _Node) -> Iterator[_Issue]:
    if (
        n.attr("coordinate_transformation_mode") == "tf_half_pixel_for_nn"
        and n.attr("nearest_mode", "round_prefer_floor") != "round_prefer_floor"
    ):
        yield _error("resize-nearest-mode", "tf_half_pixel_for_nn needs round_prefer_floor")
    axes = n.attr("axes")
    if axes is not None and len(set(axes)) != len(axes):
        yield _error("resize-axes", f"axes {list(axes)} repeat an axis")
    scales_index, sizes_index = (1, None) if n.opset < 11 else (2, 3)
    rank = n.rank(0)
    if n.input(scales_index) and not n.is_constant(scales_index):
        if axes is not None and rank is not None and [a % rank for a in axes] != [*range(rank)]:
            yield _error(
                "resize-dynamic-scales-axes",
                f"runtime scales with axes {list(axes)}: "
                f"TensorRT needs axes 0..{rank - 1} in order",
            )
        return
    mode = n.attr("mode", "nearest")
    trailing = RESIZE_SCALABLE_TRAILING_AXES.get(mode)
    factors = _resize_factors(n, scales_index, sizes_index, axes)
    if trailing and factors and any(f != 1.0 for f in factors[:-trailing]):
        yield _error(
            "resize-scaled-axes",
            f"{mode} resize with factors {factors}: TensorRT "
            f"rescales only the last {trailing} axes",
        )


def _resize_factors(
    n: _Node, scales_index: int, sizes_index: int | None, axes: list[int] | None
) -> list[float] | None:
    """Full-rank scale factors when scales (or sizes and the input shape) are constant."""
    factors, in_shape = n.value(scales_index), n.shape(0)
    if (factors is None or factors.size == 0) and sizes_index is not None:
        sizes = n.value(sizes_index)
        in_dims = in_shape if axes is None or in_shape is None else [in_shape[a] for a in axes]
        if sizes is None or not in_dims or None in in_dims or len(in_dims) != sizes.size:
            return None
        factors = sizes.astype(np.float64) / np.asarray(in_dims, dtype=np.float64)
    if factors is None or factors.size == 0 or (axes is not None and in_shape is None):
        return None
    if axes is None:
        return [float(f) for f in factors.reshape(-1)]
    full = [1.0] * len(in_shape)
    for axis, factor in zip(axes, factors.reshape(-1)):
        full[axis % len(in_shape)] = float(factor)
    return full


def _mod(n: _Node) -> Iterator[_Issue]:
    if n.attr("fmod", 0) == 0 and {n.elem_type(0), n.elem_type(1)} & _FLOAT_ELEM_TYPES:
        yield _error(
            "mod-float-fmod0",
            "floating-point Mod with fmod=0 (Python %): TensorRT "
            "takes fmod=0 for integers only; use fmod=1 or Div/Floor/Mul/Sub",
        )


def _pool(n: _Node) -> Iterator[_Issue]:
    dilations = n.attr("dilations")
    if dilations and any(d != 1 for d in dilations):
        yield _error(
            "pool-dilations", f"dilations {list(dilations)}: TensorRT pools with dilation 1 only"
        )
    spatial = len(n.attr("kernel_shape", []))
    if n.op != "LpPool" and spatial > 3:
        yield _error(
            "pool-rank",
            f"{spatial}-D pooling: TensorRT pools 2-D or 3-D (1-D through an added axis)",
        )


def _group_norm(n: _Node) -> Iterator[_Issue]:
    shape, groups = n.shape(0), n.attr("num_groups")
    if shape is not None and len(shape) < 3:
        yield _error(
            "groupnorm-rank",
            f"rank-{len(shape)} input: TensorRT's GroupNormalization needs rank >= 3 (N, C, ...)",
        )
    elif shape is not None and shape[1] and groups and shape[1] % groups:
        yield _error("groupnorm-groups", f"num_groups={groups} does not divide C={shape[1]}")


def _dropout(n: _Node) -> Iterator[_Issue]:
    value = n.value(2)
    if value is not None and value.size and bool(value.reshape(-1)[0]):
        yield _error("dropout-training-mode", "training_mode is true: inference only")


def _stft(n: _Node) -> Iterator[_Issue]:
    shape = n.shape(0)
    if shape and shape[-1] == 2:
        yield _error("stft-complex", "complex signal (last dim 2): TensorRT's STFT is real-only")


def _eye_like(n: _Node) -> Iterator[_Issue]:
    shape = n.shape(0)
    if shape is not None and None in shape:
        yield _error("eyelike-shape", f"input shape {list(shape)}: EyeLike needs it static")


def _hardmax(n: _Node) -> Iterator[_Issue]:
    shape = n.shape(0)
    axis = n.attr("axis", -1 if n.opset >= 13 else 1)
    if shape and shape[axis % len(shape)] is None:
        yield _error(
            "hardmax-dynamic-axis",
            f"axis {axis} has no static size: TensorRT's Hardmax needs it at build time",
        )


def _deform_conv(n: _Node) -> Iterator[_Issue]:
    weight_shape = n.shape(1)
    kernel = n.attr("kernel_shape") or (weight_shape[2:] if weight_shape else None)
    if kernel is not None and len(kernel) not in (1, 2):
        yield _error("deformconv-form", f"{len(kernel)}-D DeformConv: TensorRT does 1-D/2-D")
    pads = list(n.attr("pads", []))
    if pads[: len(pads) // 2] != pads[len(pads) // 2 :]:
        yield _error("deformconv-form", f"pads {pads}: begin and end padding must be equal")


def _attention(n: _Node) -> Iterator[_Issue]:
    if any(n.input(i) for i in (4, 5, 6)):
        yield _error(
            "attention-form",
            "KV-cache inputs (past_key, past_value, nonpad_kv_seqlen) are not imported by TensorRT",
        )


def _constant(n: _Node) -> Iterator[_Issue]:
    rejected = sorted({"sparse_value", "value_string", "value_strings"} & set(n.attrs))
    if rejected:
        yield _error(
            "constant-form", f"{rejected[0]}: TensorRT rejects sparse and string constants"
        )


def _constant_of_shape(n: _Node) -> Iterator[_Issue]:
    if "value" in n.attrs and n.attr("value").data_type == TensorProto.UINT8:
        yield _error("constantofshape-uint8", "a UINT8 fill value is rejected")


def _cast(n: _Node) -> Iterator[_Issue]:
    target = _type_name(n.attr("to", TensorProto.FLOAT))
    if target not in ("FP32", "FP16", "BF16", "DOUBLE", "INT32", "INT64", "UINT8", "BOOL"):
        yield _error("cast-target-type", f"Cast to {target}: TensorRT's Cast cannot produce it")


def _rnn(n: _Node) -> Iterator[_Issue]:
    if n.attr("direction", "forward") != "bidirectional":
        return
    for name in ("activations", "activation_alpha", "activation_beta"):
        values = list(n.attr(name, []))
        if values[: len(values) // 2] != values[len(values) // 2 :]:
            yield _error(
                "rnn-bidirectional-activations",
                f"{name} differ between directions: "
                "TensorRT runs the reverse pass with the forward activations",
            )


def _zero_point(n: _Node) -> Iterator[_Issue]:
    value = n.value(2)
    if value is not None and np.any(value.astype(np.float64) != 0):
        yield _error("qdq-zero-point", "non-zero zero point: TensorRT quantizes symmetrically")


def _gather_nd(n: _Node) -> Iterator[_Issue]:
    rank, batch_dims = n.rank(0), n.attr("batch_dims", 0)
    if rank is not None and batch_dims >= rank - 1:
        yield _error(
            "gathernd-batch-dims",
            f"batch_dims={batch_dims} with rank-{rank} data: TensorRT needs batch_dims < rank - 1",
        )


def _if(n: _Node) -> Iterator[_Issue]:
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
        yield _error("if-branches", "then/else branches differ in output count or rank")


_RULES: dict[str, Callable[[_Node], Iterator[_Issue]]] = {
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


# ------------------------------------------------------------------------------------------
# Checks every node gets, and the graph and model passes
# ------------------------------------------------------------------------------------------
def _type_name(elem_type: int | None) -> str:
    if elem_type is None:
        return "unknown"
    if elem_type in _TABLE_TYPE_NAMES:
        return _TABLE_TYPE_NAMES[elem_type]
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:  # a number no ONNX version defines (a damaged file)
        return f"undefined type {elem_type}"


def _op_support(n: _Node, table: dict[str, Any]) -> Iterator[_Issue]:
    """Does the parser have a built-in importer for this node at all?"""
    domain, entry, version = n.proto.domain, table["ops"].get(n.op), table["trt_version_documented"]
    if domain not in DEFAULT_DOMAINS:
        if entry and entry["supported"]:
            why = (
                f"the parser ignores domains and would hand it to its built-in importer, "
                f"which assumes the inputs and semantics of ONNX {n.op}"
            )
        else:
            why = f"it needs a TensorRT plugin named {n.op!r}, which stock TensorRT lacks"
        yield _error("custom-domain", f"{domain}::{n.op} is not a standard ONNX op: {why}")
    elif entry is None and n.op in table["not_in_table"]:
        yield _error(
            "op-not-in-table",
            f"{n.op} is not in the TensorRT {version} table "
            f"({table['not_in_table'][n.op]}); the parser would look for a plugin",
        )
    elif entry is None:
        yield _error(
            "unknown-op",
            f"no built-in importer for {n.op!r}: the parser would look "
            "for a TensorRT plugin of that name",
        )
    elif not entry["supported"]:
        yield _error(
            "unsupported-op",
            f"{n.op} is unsupported in the TensorRT {version} "
            "table: the parser's checker always rejects it",
        )


def _element_types(n: _Node, entry: dict[str, Any]) -> Iterator[_Issue]:
    """The table's types column, applied to the inputs that carry the op's data type."""
    listed = ", ".join(entry["types"])
    allowed = set(entry["types"]) | ({"DOUBLE"} if "FP32" in entry["types"] else set())
    indices = _TYPED_INPUTS.get(n.op, (0,))
    for index in range(len(n.proto.input)) if indices is None else indices:
        name = _type_name(n.elem_type(index))
        if name in allowed or name == "unknown":
            continue
        if n.op in _TYPE_ENFORCED_OPS and name in _INTEGER_TYPES:
            yield _error(
                "integer-input",
                f"input {index} is {name}: TensorRT's {n.op} takes floating point only ({listed})",
            )
        elif n.op in _TYPE_ENFORCED_OPS or name in _TYPES_REJECTED.get(n.op, ()):
            yield _error(
                "unsupported-type", f"input {index} is {name}: TensorRT's {n.op} accepts {listed}"
            )
        else:
            yield _warning(
                "type-not-in-table",
                f"input {index} is {name}, not in the table's "
                f"types for {n.op} ({listed}); the importer may still accept it",
            )


def _uint8_outputs(n: _Node) -> Iterator[_Issue]:
    for name in n.proto.output if n.op != "Constant" else ():
        entry = n.scope.lookup("types", name) if name else None
        if entry and entry[0] == TensorProto.UINT8 and not n.scope.is_graph_output(name):
            yield _error(
                "uint8-intermediate",
                f"output {name!r} is UINT8: TensorRT allows UINT8 "
                "only on network inputs and outputs",
            )


def _check_node(n: _Node, table: dict[str, Any]) -> list[_Issue]:
    issues = list(_op_support(n, table))
    entry = table["ops"].get(n.op)
    if issues or not entry:
        return issues
    issues += _element_types(n, entry)
    issues += _uint8_outputs(n)
    issues += _table_rules(n)
    if n.op in _RULES:
        issues += _RULES[n.op](n)
    return issues


def _check_graph(
    graph: onnx.GraphProto,
    parent: _Scope | None,
    opset: int,
    prefix: str,
    table: dict[str, Any],
    inferred: Sequence[onnx.ValueInfoProto] = (),
) -> list[Finding]:
    scope = _Scope(graph, parent, inferred)
    findings = []
    for index, node in enumerate(graph.node):
        name = prefix + (node.name or f"{node.op_type}#{index}")
        for issue in _check_node(_Node(node, scope, opset), table):
            findings.append(
                Finding(name, node.op_type, node.domain, issue.rule, issue.message, issue.severity)
            )
        for attr in node.attribute:  # If/Loop/Scan bodies: parsed like the main graph
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                findings += _check_graph(body, scope, opset, f"{name}/{attr.name}/", table)
    return findings


def _model_finding(rule: str, severity: str, message: str) -> Finding:
    return Finding("<model>", "", "", rule, message, severity)


def _check_opset(model: onnx.ModelProto, opset: int | None, table: dict[str, Any]) -> list[Finding]:
    (low, high), version = table["onnx_opset_range"], table["trt_version_documented"]
    if opset is None:
        uses_onnx_ops = any(n.domain in DEFAULT_DOMAINS for n in model.graph.node)
        return (
            [_model_finding("opset-missing", "error", "no default-domain opset import")]
            if uses_onnx_ops
            else []
        )
    if opset < low:
        return [
            _model_finding(
                "opset-too-old",
                "error",
                f"opset {opset} is below TensorRT "
                f"{version}'s documented {low}-{high}; re-export at >= {low}",
            )
        ]
    if opset > high:
        return [
            _model_finding(
                "opset-newer-than-documented",
                "warning",
                f"opset {opset} is "
                f"above TensorRT {version}'s documented {low}-{high}; the parser "
                "has no ceiling and checks node by node",
            )
        ]
    return []


def _check_io_types(graph: onnx.GraphProto) -> list[Finding]:
    """Network inputs and outputs need a TensorRT type (the parser converts them first)."""
    initializers = {i.name for i in graph.initializer}
    findings = []
    for kind, infos in (("input", graph.input), ("output", graph.output)):
        for info in infos:
            elem_type = info.type.tensor_type.elem_type
            if info.name not in initializers and elem_type and elem_type not in _TABLE_TYPE_NAMES:
                findings.append(
                    Finding(
                        f"<{kind} {info.name}>",
                        "",
                        "",
                        "io-type",
                        f"network {kind} is {_type_name(elem_type)}: TensorRT has no such type",
                        "error",
                    )
                )
    return findings


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto, label = model, "model"
    else:
        path = Path(model)
        label = str(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such ONNX file")
        try:
            # Weights are not needed: external tensors count as constants of unknown value.
            proto = onnx.load(str(path), load_external_data=False)
        except (DecodeError, OSError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"{path}: not a readable ONNX model ({reason})") from None
    if not proto.ir_version or not proto.HasField("graph"):
        raise UsageError(f"{label}: not an ONNX model (no IR version or no graph)")
    if not _names_are_text(proto.graph):
        # ONNX strings are proto2 fields: damaged bytes load, as bytes instead of str
        raise UsageError(f"{label}: not a readable ONNX model (names that are not UTF-8 text)")
    return proto


def _names_are_text(graph: onnx.GraphProto) -> bool:
    """Every name, op type and domain in the graph (and its subgraphs) decoded to str."""
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if not isinstance(value.name, str):
            return False
    if not all(isinstance(init.name, str) for init in graph.initializer):
        return False
    for node in graph.node:
        texts = [node.name, node.op_type, node.domain, *node.input, *node.output]
        if not all(isinstance(text, str) for text in texts):
            return False
        for attribute in node.attribute:
            if not isinstance(attribute.name, str):
                return False
            subgraphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
            if not all(_names_are_text(sub) for sub in subgraphs):
                return False
    return True


def _light_model(proto: onnx.ModelProto, declared_shapes: bool = True) -> onnx.ModelProto:
    """The main graph without the weights' payloads, for ONNX shape inference.

    Inference needs only the weights' types and dims (small initializers, which may hold
    Reshape targets, are kept), and the weights can be slow to serialize or beyond
    protobuf's 2 GB limit. ``declared_shapes=False`` drops the exporter's value_info and the
    outputs' declared shapes, so every shape comes from inference alone.
    """
    graph = proto.graph
    light = onnx.ModelProto(ir_version=proto.ir_version, opset_import=proto.opset_import)
    light.graph.node.extend(graph.node)
    light.graph.input.extend(graph.input)
    light.graph.output.extend(graph.output)
    if declared_shapes:
        light.graph.value_info.extend(graph.value_info)
    else:
        for output in light.graph.output:
            output.type.tensor_type.ClearField("shape")
    declared = {i.name for i in graph.input}
    for init in graph.initializer:
        if int(np.prod(init.dims)) <= SHAPE_INFERENCE_MAX_KEPT_ELEMENTS:
            light.graph.initializer.append(init)
        elif init.name not in declared:
            light.graph.input.append(
                helper.make_tensor_value_info(init.name, init.data_type, init.dims)
            )
    return light


def _inferred_value_info(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Types and shapes ONNX shape inference finds for the main graph's tensors."""
    inferred = onnx.shape_inference.infer_shapes(_light_model(proto), strict_mode=False)
    return list(inferred.graph.value_info)


# ------------------------------------------------------------------------------------------
# Dynamic dims: where a graph with symbolic input dims gets a size baked in
# ------------------------------------------------------------------------------------------
#: metadata_props key of the JSON {input name: [dims...]} the graph was exported at
EXPORT_SHAPES_KEY = "attn_export.export_shapes"
DYNAMIC_RULES = (
    "baked-dynamic-dim",
    "dynamic-dim-dropped",
    "dynamic-dim-fixed",
    "breaks-at-other-size",
    "static-output",
)
Dim = int | str | None  # a size, a symbol (dim_param) or unknown

# Elementwise ops whose inputs broadcast against each other (right-aligned dims).
_BROADCAST_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "PRelu",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
}
# Ops whose output keeps the data input's axes in place (a static output dim where the
# data had a symbol means the op's constant operand replaced it).
_AXIS_KEEPING_OPS = {"Tile", "Slice", "Resize", "Split", "Pad"}


def record_export_shapes(model: onnx.ModelProto, shapes: dict[str, Sequence[int]]) -> None:
    """Write the shapes ``model`` was exported at into its metadata (:data:`EXPORT_SHAPES_KEY`)."""
    text = json.dumps({name: [int(d) for d in dims] for name, dims in shapes.items()})
    for prop in model.metadata_props:
        if prop.key == EXPORT_SHAPES_KEY:
            prop.value = text
            return
    model.metadata_props.add(key=EXPORT_SHAPES_KEY, value=text)


def _dims_of(info: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    return tuple(
        d.dim_value
        if d.HasField("dim_value")
        else d.dim_param
        if isinstance(d.dim_param, str) and d.dim_param
        else None
        for d in tensor_type.shape.dim
    )


def graph_input_dims(graph: onnx.GraphProto) -> dict[str, tuple[Dim, ...] | None]:
    """Each graph input's dims (size, symbol or None for unknown); None for an unknown rank."""
    initializers = {i.name for i in graph.initializer}
    return {i.name: _dims_of(i) for i in graph.input if i.name not in initializers}


def _export_shapes_problem(shapes: Any, inputs: dict[str, tuple[Dim, ...] | None]) -> str | None:
    """Why ``shapes`` cannot be the sizes these graph inputs were exported at, or None."""
    if not isinstance(shapes, dict):
        return f"export shapes must map input names to dims, not {type(shapes).__name__}"
    for name, dims in shapes.items():
        if name not in inputs:  # a forward argument the graph does not read
            continue
        if not isinstance(dims, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims
        ):
            return f"export shape of {name!r} must be positive integers, not {dims!r}"
        declared = inputs[name]
        if declared is not None and (
            len(declared) != len(dims)
            or any(isinstance(g, int) and g != d for g, d in zip(declared, dims))
        ):
            return (
                f"export shape {tuple(dims)} of {name!r} does not fit its graph shape "
                f"{_format_shape(declared)}"
            )
    return None


def _metadata_export_shapes(proto: onnx.ModelProto) -> tuple[Any, list[Finding]]:
    """The export shapes recorded in the metadata (None if absent) and any warning about them."""
    text = next((p.value for p in proto.metadata_props if p.key == EXPORT_SHAPES_KEY), None)
    if text is None:
        return None, []
    try:
        shapes = json.loads(text)
    except (TypeError, ValueError):
        shapes = text
    problem = _export_shapes_problem(shapes, graph_input_dims(proto.graph))
    if problem is None:
        return shapes, []
    return None, [
        _model_finding(
            "export-shapes-unreadable",
            "warning",
            f"metadata {EXPORT_SHAPES_KEY}: {problem}; checked without export sizes",
        )
    ]


def _dynamic_dims(
    graph: onnx.GraphProto, export_shapes: dict[str, Sequence[int]] | None
) -> list[DynamicDim]:
    found = []
    for name, dims in graph_input_dims(graph).items():
        sizes = (export_shapes or {}).get(name)
        for index, dim in enumerate(dims or ()):
            if isinstance(dim, str):
                found.append(DynamicDim(name, index, dim, int(sizes[index]) if sizes else None))
    return found


class _Dynamic:
    """Symbolic shapes of every tensor, and the export sizes a constant may have baked in."""

    def __init__(self, dims: list[DynamicDim], shapes: dict[str, tuple[Dim, ...]]) -> None:
        self.dims = dims
        self.shapes = shapes
        self.by_symbol: dict[str, DynamicDim] = {}
        for dim in dims:
            self.by_symbol.setdefault(dim.symbol, dim)
        # (value, what) for every size a baked constant could hold: each dynamic dim's
        # export size, and the product of two dynamic dims of one input (H*W tokens).
        # Size 1 is left out: it is every unsqueeze and broadcast constant.
        self.sizes: list[tuple[int, str, set[str]]] = []
        sized = [d for d in dims if d.export_size is not None]
        for d in sized:
            self.sizes.append((d.export_size, f"the export size of {d.describe()}", {d.symbol}))
        for i, a in enumerate(sized):
            for b in sized[i + 1 :]:
                if a.input == b.input:
                    self.sizes.append(
                        (
                            a.export_size * b.export_size,
                            f"the export size of "
                            f"input {a.input!r} dims {a.dim}*{b.dim} "
                            f"({a.symbol}*{b.symbol})",
                            {a.symbol, b.symbol},
                        )
                    )
        self.sizes = [s for s in self.sizes if s[0] > 1]

    def shape(self, name: str) -> tuple[Dim, ...] | None:
        return self.shapes.get(name) if name else None

    def symbol(self, dim: Dim) -> DynamicDim | None:
        return self.by_symbol.get(dim) if isinstance(dim, str) else None

    def baked(self, value: int, against: Dim) -> str | None:
        """What ``value`` is the export size of, at a position where the data has ``against``.

        Only the export size of that very symbol (or a product with it) counts: compared with
        every export size, shape constants after a reshape that loses the symbols match head
        counts and window sizes by coincidence (seen on the zoo: halo, moa).
        """
        known = self.symbol(against)
        for size, what, symbols in self.sizes if known else ():
            if value == size and known.symbol in symbols:
                return what
        return None


def _shape_operands(n: _Node, dyn: _Dynamic) -> Iterator[tuple[str, list[int], list[Dim]]]:
    """(label, constant values, the data dim each value stands against) per shape operand."""
    op, data = n.op, dyn.shape(n.input(0)) or ()

    def values(index: int) -> list[int] | None:
        value = n.value(index) if n.input(index) else None
        if value is None or value.dtype.kind not in "iu":
            return None
        return [int(v) for v in value.reshape(-1)]

    def left(count: int) -> list[Dim]:
        return [data[i] if i < len(data) else None for i in range(count)]

    def at_axes(axes: Sequence[int]) -> list[Dim]:
        rank = len(data)
        return [data[a % rank] if rank and -rank <= a < rank else None for a in axes]

    if op == "Reshape" and (shape := values(1)):
        yield "shape constant", shape, left(len(shape))
    elif op == "Expand" and (shape := values(1)):
        pad = len(shape) - len(data)
        yield (
            "shape constant",
            shape,
            [data[i - pad] if i >= pad else None for i in range(len(shape))],
        )
    elif op == "Tile" and (repeats := values(1)):
        yield "repeats constant", repeats, left(len(repeats))
    elif op == "Resize" and n.opset >= 11 and (sizes := values(3)):
        axes = n.attr("axes")
        yield "sizes constant", sizes, at_axes(axes) if axes else left(len(sizes))
    elif op == "Slice" and n.opset >= 10:
        axes = values(3)
        for index, label in ((1, "starts constant"), (2, "ends constant")):
            if (bounds := values(index)) is not None:
                yield label, bounds, at_axes(axes if axes else range(len(bounds)))
    elif op == "Split":
        sizes = values(1) if n.opset >= 13 else list(n.attr("split", []) or [])
        if sizes:
            yield "split sizes", sizes, at_axes([n.attr("axis", 0)]) * len(sizes)


def _baked_constants(n: _Node, dyn: _Dynamic) -> Iterator[_Issue]:
    """Shape constants that hold a dynamic dim's export size where the data has that dim."""
    for label, values, against in _shape_operands(n, dyn):
        held = []
        for value, dim in zip(values, against):
            what = dyn.baked(value, dim) if value > 1 else None
            if what and f"{value} = {what}" not in held:
                held.append(f"{value} = {what}")
        if held:
            yield _error(
                "baked-dynamic-dim", f"{label} {values} holds {'; '.join(held)}, which is dynamic"
            )


def _format_shape(dims: Sequence[Dim]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _dropped_dims(n: _Node, dyn: _Dynamic) -> Iterator[_Issue]:
    """A shape op that turns a dynamic dim of its data into a constant size."""
    data = dyn.shape(n.input(0))
    symbols = [dyn.symbol(d) for d in data or ()]
    if not any(symbols):
        return
    leading = n.value(1) if n.op == "Reshape" and symbols[0] else None
    if leading is not None and leading.dtype.kind in "iu" and leading.size and leading.flat[0] > 1:
        # 0 (copy) or -1 keeps a dynamic leading dim; a size > 1 replaces it by a constant
        yield _error(
            "dynamic-dim-dropped",
            f"shape constant {leading.tolist()} fixes dim 0 to "
            f"{int(leading.flat[0])} where its data has {symbols[0].describe()}: the "
            "graph runs only at the export size",
        )
        return
    for output in n.proto.output:
        out = dyn.shape(output)
        if out is None:
            continue
        if n.op == "Reshape" and all(isinstance(d, int) for d in out):
            lost = ", ".join(s.describe() for s in dict.fromkeys(filter(None, symbols)))
            yield _error(
                "dynamic-dim-dropped",
                f"reshapes {_format_shape(data)} to the static "
                f"{_format_shape(out)}: {lost} is dropped, so the graph runs only at "
                "the export size",
            )
            return
        if n.op in _AXIS_KEEPING_OPS and len(out) == len(data):
            for symbol, dim in zip(symbols, out):
                if symbol and isinstance(dim, int):
                    yield _error(
                        "dynamic-dim-dropped",
                        f"turns {symbol.describe()} into the "
                        f"constant {dim}: the graph runs only at that size",
                    )
                    return


def _right_aligned(shape: Sequence[Dim], rank: int) -> list[Dim]:
    return [None] * (rank - len(shape)) + list(shape[-rank:] if rank else [])


def _fixed_dims(n: _Node, dyn: _Dynamic) -> Iterator[_Issue]:
    """A dynamic dim that meets a constant size (broadcast, concat, matmul) and takes it."""
    inputs = [(name, dyn.shape(name)) for name in n.proto.input if name]
    inputs = [(name, shape) for name, shape in inputs if shape is not None]
    out = dyn.shape(n.proto.output[0]) if n.proto.output else None
    if out is None or not inputs:
        return
    pairs: list[tuple[Dim, int]] = []  # (input dim, size it was unified with)
    if n.op in _BROADCAST_OPS or n.op == "Expand":
        for _, shape in inputs:
            pairs += zip(_right_aligned(shape, len(out)), out)
    elif n.op == "Concat":
        axis = n.attr("axis", 0) % len(out) if out else 0
        for _, shape in inputs:
            if len(shape) == len(out):
                pairs += [(d, o) for i, (d, o) in enumerate(zip(shape, out)) if i != axis]
    elif n.op == "MatMul" and len(inputs) == 2:
        (_, a), (_, b) = inputs
        if len(a) >= 2 and len(b) >= 2:  # contracted dims must agree
            pairs += [(a[-1], b[-2]), (b[-2], a[-1])]
            batch = len(out) - 2
            for shape in (a, b):
                pairs += zip(_right_aligned(shape[:-2], batch), out[:batch])
    for dim, size in pairs:
        symbol = dyn.symbol(dim)
        if symbol and isinstance(size, int) and size != 1:
            yield _error(
                "dynamic-dim-fixed",
                f"{symbol.describe()} meets a constant size "
                f"{size} here, which fixes it: the graph runs only at "
                f"{symbol.symbol} = {size}",
            )
            return


def _static_outputs(graph: onnx.GraphProto, dyn: _Dynamic) -> list[Finding]:
    findings = []
    inputs = ", ".join(d.describe() for d in dyn.dims)
    for output in graph.output:
        shape = dyn.shape(output.name)
        if shape and all(isinstance(d, int) for d in shape):
            findings.append(
                Finding(
                    f"<output {output.name}>",
                    "",
                    "",
                    "static-output",
                    f"comes out static {_format_shape(shape)} though {inputs} "
                    "is dynamic: a dynamic dim was fixed on the way",
                    "error",
                )
            )
    return findings


def _inferred_shapes(
    proto: onnx.ModelProto, fixed: dict[DynamicDim, int] | None = None
) -> dict[str, tuple[Dim, ...]]:
    """Every tensor's shape from ONNX inference alone, symbols propagated (data_prop);
    ``fixed`` first sets those input dims to a size."""
    light = _light_model(proto, declared_shapes=False)
    for dim, size in (fixed or {}).items():
        info = next(i for i in light.graph.input if i.name == dim.input)
        info.type.tensor_type.shape.dim[dim.dim].dim_value = size
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    graph = inferred.graph
    shapes = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = _dims_of(info)
        if dims is not None:
            shapes[info.name] = dims
    return shapes


def _probe_size(dim: DynamicDim) -> int:
    """Another size to try a dynamic dim at: batch (dim 0) one more, other dims twice the
    export size (spatial and token dims often must stay multiples of a window)."""
    assert dim.export_size is not None
    return dim.export_size + 1 if dim.dim == 0 else 2 * dim.export_size


def _probe_failures(
    proto: onnx.ModelProto, dims: list[DynamicDim], opset: int
) -> Iterator[tuple[onnx.NodeProto, int, str]]:
    """Reshapes and Splits whose constant operand cannot work once the dynamic dims take
    other sizes: the export sizes are baked into them, wherever the symbols were lost."""
    sized = [d for d in dims if d.export_size is not None]
    if not sized:
        return
    probe = {d: _probe_size(d) for d in sized}
    shapes = _inferred_shapes(proto, probe)
    at = ", ".join(
        f"{d.describe()} = {size} (exported at {d.export_size})" for d, size in probe.items()
    )
    scope = _Scope(proto.graph, None)
    for index, node in enumerate(proto.graph.node):
        n = _Node(node, scope, opset)
        data = shapes.get(n.input(0)) if n.input(0) else None
        if data is None or not all(isinstance(d, int) for d in data):
            continue
        if n.op == "Reshape" and (target := n.value(1)) is not None and target.size:
            target = [int(t) for t in target.reshape(-1)]
            kept = [
                data[i] if t == 0 and i < len(data) and not n.attr("allowzero", 0) else t
                for i, t in enumerate(target)
            ]
            fixed, count = int(np.prod([k for k in kept if k != -1])), int(np.prod(data))
            if fixed and (count % fixed if -1 in kept else count != fixed):
                yield (
                    node,
                    index,
                    (
                        f"shape constant {target} cannot hold its input "
                        f"{_format_shape(data)} at {at}"
                    ),
                )
        elif n.op == "Split":
            sizes = n.value(1) if opset >= 13 else np.asarray(n.attr("split", []) or [])
            axis = n.attr("axis", 0)
            if (
                sizes is not None
                and sizes.size
                and -len(data) <= axis < len(data)
                and int(sizes.sum()) != data[axis]
            ):
                yield (
                    node,
                    index,
                    (
                        f"split sizes {sizes.tolist()} (sum {int(sizes.sum())}) "
                        f"cannot split dim {axis % len(data)} of size "
                        f"{data[axis]} at {at}"
                    ),
                )


def _dynamic_findings(proto: onnx.ModelProto, dims: list[DynamicDim], opset: int) -> list[Finding]:
    """Where the main graph gets a dynamic dim fixed; nothing for a static graph."""
    if not dims:
        return []
    try:
        shapes = _inferred_shapes(proto)
    except Exception as exc:  # noqa: BLE001 - the C++ inference raises untyped errors
        return [
            _model_finding(
                "dynamic-dims-unchecked",
                "warning",
                f"ONNX shape inference failed ({type(exc).__name__}): dynamic dims not checked",
            )
        ]
    dyn = _Dynamic(dims, shapes)
    scope = _Scope(proto.graph, None)
    findings = []
    for index, node in enumerate(proto.graph.node):
        n = _Node(node, scope, opset)
        name = node.name or f"{node.op_type}#{index}"
        issues = [*_baked_constants(n, dyn), *_dropped_dims(n, dyn), *_fixed_dims(n, dyn)]
        findings += [
            Finding(name, node.op_type, node.domain, i.rule, i.message, i.severity) for i in issues
        ]
    flagged = {f.node for f in findings}
    try:
        failures = list(_probe_failures(proto, dims, opset))
    except Exception:  # noqa: BLE001 - inference at the probe sizes is a bonus, not a must
        failures = []
    for node, index, message in failures:
        name = node.name or f"{node.op_type}#{index}"
        if name not in flagged:  # one finding per node: the others already say why
            findings.append(
                Finding(name, node.op_type, node.domain, "breaks-at-other-size", message, "error")
            )
    return findings + _static_outputs(proto.graph, dyn)


def check_model(
    model: onnx.ModelProto | str | Path, export_shapes: dict[str, Sequence[int]] | None = None
) -> CheckReport:
    """Predict, node by node, whether TensorRT's ONNX parser accepts ``model``, and whether
    its dynamic dims (symbolic input dims) stay dynamic.

    ``model`` is a ModelProto (left unmodified) or a path. ``export_shapes`` ({input name:
    dims}) are the sizes the graph was exported at; without it they are read from the
    metadata key :data:`EXPORT_SHAPES_KEY` when present. A missing or unreadable file, or
    export shapes that do not fit the graph's inputs, raise UsageError.
    """
    proto = _load(model)
    table = load_op_table()
    opset = next((o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS), None)
    findings = _check_opset(proto, opset, table) + _check_io_types(proto.graph)
    if export_shapes is not None:
        problem = _export_shapes_problem(export_shapes, graph_input_dims(proto.graph))
        if problem:
            raise UsageError(problem)
    else:
        export_shapes, warnings = _metadata_export_shapes(proto)
        findings += warnings
    if proto.functions:
        try:
            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as exc:  # noqa: BLE001 - the C++ inliner raises untyped errors
            raise UsageError(f"cannot expand the model's local functions: {exc}") from None
    inferred: list[onnx.ValueInfoProto] = []
    try:
        inferred = _inferred_value_info(proto)
    except Exception as exc:  # noqa: BLE001 - best effort: rules then use declared types only
        findings.append(
            _model_finding(
                "types-unknown",
                "warning",
                "ONNX shape inference "
                f"failed ({type(exc).__name__}): type-dependent rules "
                "saw declared types only",
            )
        )
    findings += _check_graph(proto.graph, None, opset or 0, "", table, inferred)
    dims = _dynamic_dims(proto.graph, export_shapes)
    findings += _dynamic_findings(proto, dims, opset or 0)
    return CheckReport(findings, opset, table["trt_version_documented"], dims)


def format_report(report: CheckReport) -> str:
    """One line per finding (severity, node, op, rule, why), then the verdict line."""
    lines = []
    for f in report.findings:
        op = f.op_type if f.domain in DEFAULT_DOMAINS else f"{f.domain}::{f.op_type}"
        where = f"{f.node} [{op}]" if op else f.node
        lines.append(f"{f.severity:<7} {where} {f.rule}: {f.message}")
    counts = ", ".join(
        f"{len(found)} {kind}{'s' * (len(found) != 1)}"
        for kind, found in (("error", report.errors), ("warning", report.warnings))
    )
    parser_errors = [f for f in report.errors if f.rule not in DYNAMIC_RULES]
    if report.passed:
        verdict = "PASS: TensorRT's ONNX parser should accept this model"
    elif parser_errors:
        verdict = "FAIL: TensorRT's ONNX parser would reject this model"
    else:
        verdict = (
            "FAIL: TensorRT's ONNX parser should accept this model, but it runs only "
            "at its export shapes"
        )
    dynamic = (
        "; dynamic: " + ", ".join(d.describe() for d in report.dynamic_dims)
        if report.dynamic_dims
        else ""
    )
    lines.append(
        f"{verdict} ({counts}; TensorRT {report.table_version} table, opset "
        f"{report.opset}{dynamic})"
    )
    return "\n".join(lines)
