"""Float16 storage on the CPU: fp32 math inside each node, every float16 tensor rounded between.

ONNX Runtime's CPU provider has no float16 kernels for most ops; it casts their inputs to
float32 and drops the Cast pairs between neighbouring upcast nodes, so an fp16 graph there
runs almost entirely in float32 and hides overflow (seen: ``simam`` at inputs x100
overflows with float16 storage, yet its fp16 graph on ORT CPU returns finite values). The
simulation models a GPU instead: each float16 output gets a Cast(FLOAT16) + Cast(FLOAT)
pair in an fp32 copy of the graph, run with graph optimisations off so the pairs stay.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..backends.base import ort_session
from ..errors import UsageError
from .graph import FLOAT, FLOAT16, elem_types


def simulate_fp16_storage(
    model_fp16: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Run an fp16 graph as a GPU stores it: fp32 math per node, float16 between nodes.

    Returns the graph outputs as float32 arrays (float16 outputs are returned upcast).
    Float16 inputs may be fed as float32 or float16.
    """
    initializer_names = {i.name for i in model_fp16.graph.initializer}
    missing = [
        v.name
        for v in model_fp16.graph.input
        if v.name not in feeds and v.name not in initializer_names
    ]
    if missing:
        raise UsageError(f"feeds lack graph inputs: {', '.join(missing)}")
    float16_inputs = {
        v.name for v in model_fp16.graph.input if v.type.tensor_type.elem_type == FLOAT16
    }
    feeds32 = {}
    for name, value in feeds.items():
        value = np.asarray(value)
        if name in float16_inputs:  # the GPU receives float16: round float32 feeds first
            value = value.astype(np.float16).astype(np.float32)
        feeds32[name] = value
    values = run(simulation_model(model_fp16), [feeds32], {})[0]
    return [values[o.name] for o in model_fp16.graph.output]


def simulation_model(
    model_fp16: onnx.ModelProto, types: Mapping[str, int] | None = None
) -> onnx.ModelProto:
    """An fp32 copy of ``model_fp16`` that rounds every float16 tensor through a Cast pair.

    ``types``: element types of its tensors when the caller knows them (else inferred).
    """
    types = types if types is not None else elem_types(model_fp16, strict=False)
    graph = model_fp16.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        new = copy.deepcopy(node)
        _upcast_attributes(new)
        rounded = []
        for index, output in enumerate(node.output):
            if output and types[output] == FLOAT16:
                new.output[index] = f"{output}/sim_fp32"
                rounded.append(output)
        nodes.append(new)
        for output in rounded:
            nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{output}/sim_fp32"],
                    [f"{output}/sim_fp16"],
                    name=f"{output}/sim_round",
                    to=FLOAT16,
                )
            )
            nodes.append(
                helper.make_node(
                    "Cast", [f"{output}/sim_fp16"], [output], name=f"{output}/sim_upcast", to=FLOAT
                )
            )
    initializers = [
        numpy_helper.from_array(numpy_helper.to_array(i).astype(np.float32), i.name)
        if i.data_type == FLOAT16
        else i
        for i in graph.initializer
    ]
    inputs = [_as_float32(v) for v in graph.input]
    outputs = [_as_float32(v) for v in graph.output]
    return helper.make_model(
        helper.make_graph(
            nodes, graph.name + "_fp16_storage_simulation", inputs, outputs, initializers
        ),
        opset_imports=list(model_fp16.opset_import),
        ir_version=model_fp16.ir_version,
    )


def _upcast_attributes(node: onnx.NodeProto) -> None:
    """Float16-typed attributes of ``node`` become float32 (the rounding Cast pair follows)."""
    for attribute in node.attribute:
        if (
            attribute.name in ("to", "dtype")
            and attribute.type == onnx.AttributeProto.INT
            and attribute.i == FLOAT16
        ):
            attribute.i = FLOAT
        elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT16:
            attribute.t.CopyFrom(
                numpy_helper.from_array(
                    numpy_helper.to_array(attribute.t).astype(np.float32), attribute.t.name
                )
            )


def _as_float32(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    value = copy.deepcopy(value)
    if value.type.tensor_type.elem_type == FLOAT16:
        value.type.tensor_type.elem_type = FLOAT
    return value


class Session:
    """ONNX Runtime CPU on ``model``, able to return ``extra_outputs`` (name -> element type)
    as well as the graph outputs.

    Optimisations off: they would fold the rounding Cast pairs. One thread: the same sums in
    the same order on every run, so the search is deterministic.
    """

    def __init__(self, model: onnx.ModelProto, extra_outputs: Mapping[str, int]) -> None:
        model_with_outputs = onnx.ModelProto()
        model_with_outputs.CopyFrom(model)
        declared = {o.name for o in model.graph.output}
        for name, elem_type in extra_outputs.items():
            if name not in declared:
                model_with_outputs.graph.output.append(
                    helper.make_tensor_value_info(name, elem_type, None)
                )
                declared.add(name)
        self.session = ort_session(
            model_with_outputs.SerializeToString(), threads=1, optimize=False
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(
        self,
        feeds_list: Sequence[Mapping[str, np.ndarray]],
        outputs: Sequence[str] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Per feeds: the feeds and the outputs (all, or ``outputs``) by name."""
        names = list(outputs) if outputs is not None else self.outputs
        results = []
        for feeds in feeds_list:
            inputs = {k: feeds[k] for k in self.inputs}
            results.append(
                {**inputs, **dict(zip(names, self.session.run(names, inputs), strict=True))}
            )
        return results


def run(
    model: onnx.ModelProto,
    feeds_list: Sequence[Mapping[str, np.ndarray]],
    extra_outputs: Mapping[str, int],
) -> list[dict[str, np.ndarray]]:
    """Per feeds: the feeds, the outputs and ``extra_outputs`` (name -> element type) by name."""
    return Session(model, extra_outputs).run(feeds_list)
