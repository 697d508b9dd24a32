"""Element-type rules: the table's types column per op, UINT8 only at the network's edges,
and network inputs and outputs of a type TensorRT has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import onnx
from onnx import TensorProto

from .node import Issue, Node, error, warning
from .op_limits import REDUCE_OPS
from .report import Finding
from .table import TABLE_TYPE_NAMES, type_name

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
_TYPES_REJECTED = {op: {"BOOL", "UINT8"} for op in ("Resize", *REDUCE_OPS)}


def element_types(n: Node, entry: dict[str, Any]) -> Iterator[Issue]:
    """The table's types column, applied to the inputs that carry the op's data type."""
    listed = ", ".join(entry["types"])
    allowed = set(entry["types"]) | ({"DOUBLE"} if "FP32" in entry["types"] else set())
    indices = _TYPED_INPUTS.get(n.op, (0,))
    for index in range(len(n.proto.input)) if indices is None else indices:
        name = type_name(n.elem_type(index))
        if name in allowed or name == "unknown":
            continue
        if n.op in _TYPE_ENFORCED_OPS and name in _INTEGER_TYPES:
            yield error(
                "integer-input",
                f"input {index} is {name}: TensorRT's {n.op} takes floating point only ({listed})",
            )
        elif n.op in _TYPE_ENFORCED_OPS or name in _TYPES_REJECTED.get(n.op, ()):
            yield error(
                "unsupported-type", f"input {index} is {name}: TensorRT's {n.op} accepts {listed}"
            )
        else:
            yield warning(
                "type-not-in-table",
                f"input {index} is {name}, not in the table's "
                f"types for {n.op} ({listed}); the importer may still accept it",
            )


def uint8_outputs(n: Node) -> Iterator[Issue]:
    for name in n.proto.output if n.op != "Constant" else ():
        entry = n.scope.lookup("types", name) if name else None
        if entry and entry[0] == TensorProto.UINT8 and not n.scope.is_graph_output(name):
            yield error(
                "uint8-intermediate",
                f"output {name!r} is UINT8: TensorRT allows UINT8 "
                "only on network inputs and outputs",
            )


def io_type_findings(graph: onnx.GraphProto) -> list[Finding]:
    """Network inputs and outputs need a TensorRT type (the parser converts them first)."""
    initializers = {i.name for i in graph.initializer}
    findings = []
    for kind, infos in (("input", graph.input), ("output", graph.output)):
        for info in infos:
            elem_type = info.type.tensor_type.elem_type
            if info.name not in initializers and elem_type and elem_type not in TABLE_TYPE_NAMES:
                findings.append(
                    Finding(
                        f"<{kind} {info.name}>",
                        "",
                        "",
                        "io-type",
                        f"network {kind} is {type_name(elem_type)}: TensorRT has no such type",
                        "error",
                    )
                )
    return findings
