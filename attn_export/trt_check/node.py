"""A node as a rule sees it: its attributes with defaults, and its inputs' types, shapes and
constant values, looked up through the graph's scope (a subgraph sees its outer graphs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .table import DEFAULT_DOMAINS

# An element type, and the dims where known (None: a dim or the rank unknown).
TensorType = tuple[int, tuple[int | None, ...] | None]


class Issue(NamedTuple):
    """What a rule says about one node; the caller names the node."""

    rule: str
    severity: str
    message: str


def error(rule: str, message: str) -> Issue:
    return Issue(rule, "error", message)


def warning(rule: str, message: str) -> Issue:
    return Issue(rule, "warning", message)


class Scope:
    """Types, shapes and constants of one graph's tensor names; outer graphs via ``parent``."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        parent: Scope | None,
        inferred: Sequence[onnx.ValueInfoProto] = (),
    ) -> None:
        self.parent = parent
        self.types: dict[str, TensorType] = {}
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
        scope: Scope | None = self
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
        scope: Scope | None = self
        while scope is not None and name not in scope.outputs:
            scope = scope.parent
        return scope is not None


def tensor_value(tensor: onnx.TensorProto) -> np.ndarray | None:
    # External data is not loaded: the tensor is still a constant, its value just unknown.
    return None if tensor.data_location == TensorProto.EXTERNAL else numpy_helper.to_array(tensor)


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            return tensor_value(value)
        if attr.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    return None  # sparse or string forms: the Constant rule rejects them


class Node:
    """A node as a rule sees it: attributes with defaults, input types, shapes and constants."""

    def __init__(self, node: onnx.NodeProto, scope: Scope, opset: int) -> None:
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

    def _type(self, index: int) -> TensorType | None:
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
            return constant_node_value(found)
        return None if found is None else tensor_value(found)
