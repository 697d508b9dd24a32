"""ONNX shape inference on the graph without its weights, and dims as the dynamic rules see
them: a size, a symbol (``dim_param``) or unknown."""

from __future__ import annotations

import onnx

from ..weightless import weightless_copy
from .report import DynamicDim

Dim = int | str | None  # a size, a symbol (dim_param) or unknown


def dims_of(info: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    """A value's dims; None for an unknown rank."""
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
    return {i.name: dims_of(i) for i in graph.input if i.name not in initializers}


def inferred_value_info(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Types and shapes ONNX shape inference finds for the main graph's tensors."""
    inferred = onnx.shape_inference.infer_shapes(weightless_copy(proto), strict_mode=False)
    return list(inferred.graph.value_info)


def inferred_shapes(
    proto: onnx.ModelProto, fixed: dict[DynamicDim, int] | None = None
) -> dict[str, tuple[Dim, ...]]:
    """Every tensor's shape from ONNX inference alone, symbols propagated (data_prop);
    ``fixed`` first sets those input dims to a size."""
    light = weightless_copy(proto, declared_shapes=False)
    for dim, size in (fixed or {}).items():
        info = next(i for i in light.graph.input if i.name == dim.input)
        info.type.tensor_type.shape.dim[dim.dim].dim_value = size
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    graph = inferred.graph
    shapes = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = dims_of(info)
        if dims is not None:
            shapes[info.name] = dims
    return shapes
