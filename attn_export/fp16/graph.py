"""The fp32 graph as the converter sees it: normalised once, with every tensor's element type."""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import UsageError
from ..weightless import weightless_copy
from .numerics import relative_error

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
FP16_MAX = 65504.0  # the largest finite float16
FP16_UNIT_ROUNDOFF = 2.0**-11  # relative error of one rounding to float16

# Whose float output type comes from an attribute we would have to rewrite; rare in our graphs.
ALWAYS_FP32_OPS = frozenset(
    {
        "EyeLike",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Bernoulli",
        "Multinomial",
        "STFT",
    }  # STFT: TensorRT accepts FP32 only
)
# Inputs whose element type is fixed to float32 by the ONNX schema, whatever the data type.
FP32_ONLY_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
# Ops that read any element type at this input (no cast needed).
TYPE_AGNOSTIC_INPUTS = {("Shape", 0), ("Size", 0), ("Cast", 0), ("CastLike", 0)}
# Ops that move or select values without arithmetic: blocking one removes no rounding of its
# own, so the search walks through them to the producer that computes.
DATA_MOVEMENT_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Concat",
        "Split",
        "Expand",
        "Tile",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
        "Cast",
    }
)
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
DECISION_TYPES = frozenset(
    {
        TensorProto.BOOL,
        TensorProto.INT64,
        TensorProto.INT32,
        TensorProto.INT16,
        TensorProto.INT8,
        TensorProto.UINT8,
    }
)


class FloatGraph:
    """The fp32 graph, normalised once (named nodes, no float Constant nodes), with its types."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = normalised(model)
        graph = self.model.graph
        for node in graph.node:
            if node.op_type in CONTROL_FLOW_OPS:
                raise UsageError(
                    f"fp16 conversion does not handle control flow ({node.op_type} {node.name})"
                )
        self.elem_types = elem_types(self.model)
        self.initializers = {i.name: i for i in graph.initializer}
        self.inputs = [i for i in graph.input if i.name not in self.initializers]
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in graph.output]
        self.node_by_name = {n.name: n for n in graph.node}
        self.order = {n.name: i for i, n in enumerate(graph.node)}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for tensor in dict.fromkeys(t for t in node.input if t):
                self.consumers.setdefault(tensor, []).append(node)
        self.opset = next(
            (o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0
        )
        self._arrays: dict[str, np.ndarray] = {}
        self._rounding_errors: dict[str, float] = {}
        self._fp16_initializers: dict[str, onnx.TensorProto] = {}

    def descendants(self, name: str) -> set[str]:
        """The nodes that read, directly or not, what node ``name`` computes."""
        found: set[str] = set()
        queue = list(self.node_by_name[name].output)
        while queue:
            for reader in self.consumers.get(queue.pop(), []):
                if reader.name not in found:
                    found.add(reader.name)
                    queue.extend(reader.output)
        return found

    def is_float(self, tensor: str) -> bool:
        return bool(tensor) and self.elem_types.get(tensor) == FLOAT

    def touches_float(self, node: onnx.NodeProto) -> bool:
        return any(self.is_float(t) for t in [*node.input, *node.output])

    def array(self, initializer: str) -> np.ndarray:
        if initializer not in self._arrays:
            self._arrays[initializer] = numpy_helper.to_array(self.initializers[initializer])
        return self._arrays[initializer]

    def fp16_initializer(self, name: str) -> onnx.TensorProto:
        """The float16 copy of an initializer (cached: the search converts the graph many times)."""
        if name not in self._fp16_initializers:
            # Beyond 65504 becomes inf, as on the GPU; the simulation sees it.
            with np.errstate(over="ignore"):
                self._fp16_initializers[name] = numpy_helper.from_array(
                    self.array(name).astype(np.float16), name
                )
        return self._fp16_initializers[name]

    def fp16_rounding_error(self, initializer: str) -> float:
        if initializer not in self._rounding_errors:
            array = self.array(initializer)
            with np.errstate(over="ignore"):
                self._rounding_errors[initializer] = relative_error(array.astype(np.float16), array)
        return self._rounding_errors[initializer]

    def float_tensors(self) -> list[str]:
        """Every float tensor a node computes, in graph order."""
        return [o for n in self.model.graph.node for o in n.output if self.is_float(o)]

    def observed_tensors(self) -> dict[str, int]:
        """What the search compares: every float node output and every decision (name -> type)."""
        observed: dict[str, int] = {o: FLOAT for o in self.float_tensors()}
        observed.update({o: self.elem_types[o] for o in self.decision_outputs()})
        for node in self.model.graph.node:  # a computed k, which the margin rule reads
            if node.op_type == "TopK" and node.input[1] in self.producer:
                observed[node.input[1]] = self.elem_types[node.input[1]]
        return observed

    def decision_outputs(self) -> list[str]:
        """Integer/bool outputs computed from floats (TopK indices, ArgMax, comparisons, float->int
        Cast): rounding can flip them, and a flip is a discrete error no relative error shows."""
        return [
            o
            for n in self.model.graph.node
            if n.op_type not in ("Shape", "Size") and any(self.is_float(t) for t in n.input)
            for o in n.output
            if o and self.elem_types.get(o) in DECISION_TYPES
        ]


def declared_shape(value: onnx.ValueInfoProto) -> list[int | None] | None:
    """The input's dims: a size, or None where symbolic; None for an unknown rank."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in tensor_type.shape.dim
    ]


def static_shape(value: onnx.ValueInfoProto) -> list[int] | None:
    """The input's dims where every one is a size; None otherwise."""
    shape = declared_shape(value)
    if shape is None or None in shape:
        return None
    return [d for d in shape if d is not None]


def normalised(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with unique node names, float Constant nodes turned into initializers, and
    initializers not repeated as graph inputs.

    Names: the manifest lists islands by node name. Constants: an initializer can be stored
    in whichever precision its consumers need, a Constant node cannot without a Cast.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    initializer_names = {i.name for i in graph.initializer}
    graph_inputs = [v for v in graph.input if v.name not in initializer_names]  # IR >= 4 style
    del graph.input[:]
    graph.input.extend(graph_inputs)
    used: set[str] = set()
    kept: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" and not node.domain:
            tensor = _float_constant_value(node)
            if tensor is not None:
                graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
                continue
        name = node.name or f"{node.op_type}_{index}"
        while name in used:
            name = f"{name}_{index}"
        node.name = name
        used.add(name)
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _float_constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.t.data_type == FLOAT:
            return numpy_helper.to_array(attribute.t)
        if attribute.name == "value_float":
            return np.array(attribute.f, np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), np.float32)
    return None


def elem_types(model: onnx.ModelProto, strict: bool = True) -> dict[str, int]:
    """Element type of every tensor, by shape inference on the graph without its weight data.

    Types come from inference alone (the graph's value_info is left out). Strict: our graphs
    are fully typed.
    """
    inferred = onnx.shape_inference.infer_shapes(
        weightless_copy(model, declared_shapes=False), strict_mode=strict
    )
    types = declared_types(inferred)
    missing = [o for n in inferred.graph.node for o in n.output if o and not types.get(o)]
    if missing:
        raise UsageError(f"shape inference left tensor types unknown: {', '.join(missing[:5])}")
    return types


def declared_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element types the graph declares (initializers, inputs, value_info, outputs)."""
    graph = model.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    return types
