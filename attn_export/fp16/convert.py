"""The fp16 graph for a given set of float32 nodes: every float input cast to its node's type.

No external converter is used: onnxconverter-common 1.16's ``convert_float_to_float16``
clamps weights to +-1e4 (65504 is float16's limit), leaves a graph output float16 despite
``keep_io_types`` when a blocked node produces it, and writes an invalid graph when a
blocked node shares an initializer with an fp16 node (all three checked). Here every float
input of a node is cast to that node's precision, so the graph is typed correctly by
construction (``onnx.checker`` and strict shape inference verify it).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import FLOAT, FLOAT16, FP32_ONLY_INPUTS, TYPE_AGNOSTIC_INPUTS, FloatGraph


@dataclass
class Converted:
    """The fp16 graph, and how its tensors map back to the fp32 graph's."""

    model: onnx.ModelProto
    origin: dict[str, str]  # tensor in the fp16 graph -> tensor of the fp32 graph it carries
    home: dict[str, int]  # fp32-graph float tensor -> FLOAT or FLOAT16 as produced
    float_tensors: list[str]  # every float node output of the fp16 graph (for intermediate checks)
    types: dict[str, int]  # element type of every tensor of the fp16 graph
    cast_consumers: dict[str, list[str]]  # output of an inserted Cast -> original nodes reading it
    node_inputs: dict[str, list[str]]  # original node -> its inputs' names in the fp16 graph


def required_type(node: onnx.NodeProto, index: int, precision: int) -> int | None:
    """The type input ``index`` of ``node`` needs with the node in ``precision`` (None: any)."""
    if (node.op_type, index) in TYPE_AGNOSTIC_INPUTS:
        return None
    if (node.op_type, index) in FP32_ONLY_INPUTS:
        return FLOAT
    return precision


def initializer_needs(graph: FloatGraph, fp32_nodes: Iterable[str]) -> dict[str, set[int | None]]:
    """Float initializer -> the element types its readers need (None: any type)."""
    fp32 = set(fp32_nodes)
    needs: dict[str, set[int | None]] = defaultdict(set)
    for node in graph.model.graph.node:
        precision = FLOAT if node.name in fp32 else FLOAT16
        for index, tensor in enumerate(node.input):
            if tensor in graph.initializers and graph.is_float(tensor):
                needs[tensor].add(required_type(node, index, precision))
    return needs


def weight_elements(graph: FloatGraph, fp32_nodes: Iterable[str]) -> tuple[int, int]:
    """(float16, float32) element counts of the float weights with ``fp32_nodes`` in float32.

    Not weights: scalars, and what is read only where the schema fixes float32 or reads any
    type (Resize scales, Shape), which no precision choice can move to float16. A weight
    that float32 and float16 nodes share is stored twice and counted twice.
    """
    fp32 = set(fp32_nodes)
    stored: dict[str, set[int]] = defaultdict(set)
    for node in graph.model.graph.node:
        for index, tensor in enumerate(node.input):
            if (
                tensor in graph.initializers
                and graph.is_float(tensor)
                and (node.op_type, index) not in FP32_ONLY_INPUTS | TYPE_AGNOSTIC_INPUTS
            ):
                stored[tensor].add(FLOAT if node.name in fp32 else FLOAT16)
    counts: dict[int, int] = {FLOAT16: 0, FLOAT: 0}
    for name, precisions in stored.items():
        size = int(np.prod(graph.initializers[name].dims, dtype=np.int64))
        if size > 1:
            for precision in precisions:
                counts[precision] += size
    return counts[FLOAT16], counts[FLOAT]


def fp16_weight_fraction(graph: FloatGraph, fp32_nodes: Iterable[str]) -> float:
    fp16, fp32 = weight_elements(graph, fp32_nodes)
    return fp16 / (fp16 + fp32) if fp16 + fp32 else 1.0


def convert(graph: FloatGraph, fp32_nodes: Mapping[str, str]) -> Converted:
    """The fp16 graph with ``fp32_nodes`` in float32; every float input cast to its node's type."""
    src = graph.model.graph
    precision = {n.name: FLOAT if n.name in fp32_nodes else FLOAT16 for n in src.node}
    home = _computed_homes(graph, precision)
    initializers, stored = _stored_initializers(graph, fp32_nodes, home)
    rewriter = _Rewriter(graph, home, stored)
    for node in src.node:
        rewriter.rewrite(node, precision[node.name])
    rewriter.cast_outputs_to_fp32()
    nodes, origin = rewriter.nodes, rewriter.origin
    new_graph = helper.make_graph(
        nodes, src.name, list(src.input), list(src.output), initializers, doc_string=src.doc_string
    )
    model = helper.make_model(
        new_graph,
        opset_imports=list(graph.model.opset_import),
        ir_version=graph.model.ir_version,
        producer_name=graph.model.producer_name,
        producer_version=graph.model.producer_version,
    )
    float_tensors = [o for n in nodes for o in n.output if origin.get(o, o) in home]
    return Converted(
        model,
        origin,
        home,
        float_tensors,
        rewriter.types(initializers),
        dict(rewriter.cast_consumers),
        rewriter.node_inputs,
    )


def _computed_homes(graph: FloatGraph, precision: Mapping[str, int]) -> dict[str, int]:
    """Float graph inputs (float32) and float node outputs (their node's precision)."""
    home: dict[str, int] = {name: FLOAT for name in graph.input_names if graph.is_float(name)}
    for node in graph.model.graph.node:
        for output in node.output:
            if graph.is_float(output):
                home[output] = precision[node.name]
    return home


def _stored_initializers(
    graph: FloatGraph, fp32_nodes: Iterable[str], home: dict[str, int]
) -> tuple[list[onnx.TensorProto], dict[tuple[str, int], str]]:
    """Each float initializer stored in each precision some consumer needs (float16 under the
    original name, a float32 copy beside it as ``NAME/fp32``); ``home`` gets their types.

    Returns the initializers in graph order and (name, precision) -> stored name.
    """
    needs = initializer_needs(graph, fp32_nodes)
    initializers: list[onnx.TensorProto] = []
    stored: dict[tuple[str, int], str] = {}
    for init in graph.model.graph.initializer:
        if not graph.is_float(init.name):
            initializers.append(init)
            continue
        wanted = needs.get(init.name, {None})
        if FLOAT16 in wanted:
            initializers.append(graph.fp16_initializer(init.name))
            stored[(init.name, FLOAT16)] = init.name
            home[init.name] = FLOAT16
            if FLOAT in wanted:
                fp32_copy = onnx.TensorProto()
                fp32_copy.CopyFrom(init)
                fp32_copy.name = init.name + "/fp32"
                initializers.append(fp32_copy)
                stored[(init.name, FLOAT)] = fp32_copy.name
        else:
            initializers.append(init)
            stored[(init.name, FLOAT)] = init.name
            home[init.name] = FLOAT
    return initializers, stored


class _Rewriter:
    """The fp16 graph's nodes, built node by node: each float input read through a Cast where
    its home type is not the one the node needs (one Cast per tensor and type, shared)."""

    def __init__(
        self, graph: FloatGraph, home: Mapping[str, int], stored: Mapping[tuple[str, int], str]
    ) -> None:
        self.graph = graph
        self.home = home
        self.stored = stored
        # float16 graph outputs: computed under another name, cast back to float32 at the end
        self.output_rename = {
            name: name + "/fp16"
            for name in graph.output_names
            if home.get(name) == FLOAT16 and name in graph.producer
        }
        self.origin: dict[str, str] = {}
        self.casts: dict[tuple[str, int], str] = {}
        self.cast_consumers: dict[str, list[str]] = defaultdict(list)
        self.nodes: list[onnx.NodeProto] = []
        self.node_inputs: dict[str, list[str]] = {}

    def source(self, tensor: str, wanted: int | None, consumer: str) -> str:
        """The name ``consumer`` reads ``tensor`` by, as type ``wanted`` (None: any type)."""
        if tensor in self.graph.initializers:
            return self.stored.get((tensor, wanted or self.home[tensor]), tensor)
        internal = self.output_rename.get(tensor, tensor)
        if wanted is None or self.home[tensor] == wanted:
            return internal
        key = (tensor, wanted)
        if key not in self.casts:
            suffix = "fp16" if wanted == FLOAT16 else "fp32"
            self.casts[key] = f"{tensor}/{suffix}"
            self.origin[self.casts[key]] = tensor
            self.nodes.append(
                helper.make_node(
                    "Cast",
                    [internal],
                    [self.casts[key]],
                    name=f"{tensor}/Cast_to_{suffix}",
                    to=wanted,
                )
            )
        self.cast_consumers[self.casts[key]].append(consumer)
        return self.casts[key]

    def rewrite(self, node: onnx.NodeProto, precision: int) -> None:
        """Append ``node`` running in ``precision``, after any Cast its inputs need."""
        new = copy.deepcopy(node)
        for index, tensor in enumerate(node.input):
            if self.graph.is_float(tensor):
                wanted = required_type(node, index, precision)
                new.input[index] = self.source(tensor, wanted, node.name)
        for index, output in enumerate(node.output):
            new.output[index] = self.output_rename.get(output, output)
            self.origin[new.output[index]] = output
        if precision == FLOAT16:
            _retype_attributes(new, self.graph)
        self.node_inputs[node.name] = list(new.input)
        self.nodes.append(new)

    def cast_outputs_to_fp32(self) -> None:
        """The graph's outputs stay float32: a Cast back for each one computed in float16."""
        for name, internal in self.output_rename.items():
            self.nodes.append(
                helper.make_node("Cast", [internal], [name], name=f"{name}/Cast_to_fp32", to=FLOAT)
            )
            self.origin[name] = name

    def types(self, initializers: Iterable[onnx.TensorProto]) -> dict[str, int]:
        """The element type of every tensor of the fp16 graph."""
        graph, origin = self.graph, self.origin
        types = dict(graph.elem_types)
        types.update({i.name: i.data_type for i in initializers})
        for node in self.nodes:
            for output in node.output:
                if output:
                    source = origin.get(output, output)
                    types[output] = self.home.get(source, graph.elem_types.get(source, 0))
        for name in self.output_rename:
            types[name] = FLOAT
        for (_, wanted), cast in self.casts.items():
            types[cast] = wanted
        return types


def _retype_attributes(node: onnx.NodeProto, graph: FloatGraph) -> None:
    """Attributes that fix a float output type follow the node into float16."""
    if node.op_type == "Cast":
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == FLOAT:
                attribute.i = FLOAT16
    elif node.op_type == "ConstantOfShape" and graph.is_float(node.output[0]):
        for attribute in node.attribute:
            if attribute.name == "value":
                attribute.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float16))
                )
                return
        node.attribute.append(
            helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16)))
        )
