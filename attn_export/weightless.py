"""A graph's skeleton for ONNX shape inference: its nodes and declarations, no weight payloads.

Inference needs only the weights' types and dims, and the weights can be slow to serialize
or beyond protobuf's 2 GB limit. Small initializers keep their values: they are shape
operands (Reshape targets, Resize's empty scales beside its sizes) that inference reads, and
an empty one turned into an input makes Resize's inference fail.
"""

from __future__ import annotations

import math

import onnx
from onnx import helper

SHAPE_OPERAND_MAX_ELEMENTS = 64  # larger initializers are weights, not shape operands


def weightless_copy(model: onnx.ModelProto, declared_shapes: bool = True) -> onnx.ModelProto:
    """The main graph with its large initializers turned into typed inputs.

    ``declared_shapes=False`` drops the graph's value_info and the outputs' declared shapes,
    so every shape (and every intermediate type) comes from inference alone.
    """
    graph = model.graph
    light = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
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
        if math.prod(init.dims) <= SHAPE_OPERAND_MAX_ELEMENTS:
            light.graph.initializer.append(init)
        elif init.name not in declared:
            light.graph.input.append(
                helper.make_tensor_value_info(init.name, init.data_type, init.dims)
            )
    return light
