"""The parser's pass over a model: the opset against the table's range, then node by node
(op support, element types, the table's limits, the per-op rules), subgraphs included.

Parser behaviour mirrored (onnx-tensorrt ``ModelImporter.cpp``, ``onnxOpCheckers.cpp``): nodes
are dispatched on ``op_type`` alone, whatever their domain; an op without a built-in importer
is looked up as a plugin, which stock TensorRT does not have; ``If``/``Loop``/``Scan`` bodies
are parsed like the main graph; only initializers and ``Constant`` outputs are build-time
constants.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import onnx

from .dtypes import element_types, uint8_outputs
from .node import Issue, Node, Scope, error
from .op_limits import limit_rules
from .op_rules import RULES
from .report import Finding, model_finding, node_finding
from .table import DEFAULT_DOMAINS


def op_support(n: Node, table: dict[str, Any]) -> Iterator[Issue]:
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
        yield error("custom-domain", f"{domain}::{n.op} is not a standard ONNX op: {why}")
    elif entry is None and n.op in table["not_in_table"]:
        yield error(
            "op-not-in-table",
            f"{n.op} is not in the TensorRT {version} table "
            f"({table['not_in_table'][n.op]}); the parser would look for a plugin",
        )
    elif entry is None:
        yield error(
            "unknown-op",
            f"no built-in importer for {n.op!r}: the parser would look "
            "for a TensorRT plugin of that name",
        )
    elif not entry["supported"]:
        yield error(
            "unsupported-op",
            f"{n.op} is unsupported in the TensorRT {version} "
            "table: the parser's checker always rejects it",
        )


def node_issues(n: Node, table: dict[str, Any]) -> list[Issue]:
    """Everything wrong with one node; an op the parser cannot import gets no further rules."""
    issues = list(op_support(n, table))
    entry = table["ops"].get(n.op)
    if issues or not entry:
        return issues
    issues += element_types(n, entry)
    issues += uint8_outputs(n)
    issues += limit_rules(n)
    if n.op in RULES:
        issues += RULES[n.op](n)
    return issues


def graph_findings(
    graph: onnx.GraphProto,
    parent: Scope | None,
    opset: int,
    prefix: str,
    table: dict[str, Any],
    inferred: Sequence[onnx.ValueInfoProto] = (),
) -> list[Finding]:
    """Every node's findings, named ``prefix`` + node name (or ``op_type#index``)."""
    scope = Scope(graph, parent, inferred)
    findings = []
    for index, node in enumerate(graph.node):
        name = prefix + (node.name or f"{node.op_type}#{index}")
        findings += [
            node_finding(name, node, i) for i in node_issues(Node(node, scope, opset), table)
        ]
        for attr in node.attribute:  # If/Loop/Scan bodies: parsed like the main graph
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                findings += graph_findings(body, scope, opset, f"{name}/{attr.name}/", table)
    return findings


def opset_findings(
    model: onnx.ModelProto, opset: int | None, table: dict[str, Any]
) -> list[Finding]:
    """The default-domain opset against the table's documented range."""
    (low, high), version = table["onnx_opset_range"], table["trt_version_documented"]
    if opset is None:
        uses_onnx_ops = any(n.domain in DEFAULT_DOMAINS for n in model.graph.node)
        return (
            [model_finding("opset-missing", "error", "no default-domain opset import")]
            if uses_onnx_ops
            else []
        )
    if opset < low:
        return [
            model_finding(
                "opset-too-old",
                "error",
                f"opset {opset} is below TensorRT "
                f"{version}'s documented {low}-{high}; re-export at >= {low}",
            )
        ]
    if opset > high:
        return [
            model_finding(
                "opset-newer-than-documented",
                "warning",
                f"opset {opset} is "
                f"above TensorRT {version}'s documented {low}-{high}; the parser "
                "has no ceiling and checks node by node",
            )
        ]
    return []
