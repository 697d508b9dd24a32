"""What a check finds, and the report ``attn-export check`` prints: one line per finding, then
the verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from .node import Issue
from .table import DEFAULT_DOMAINS

# The rules of dynamic.py and probe.py: a graph whose errors are all among them parses, but
# runs only at its export shapes. Rule ids are stable: scripts key on them.
DYNAMIC_RULES = (
    "baked-dynamic-dim",
    "dynamic-dim-dropped",
    "dynamic-dim-fixed",
    "breaks-at-other-size",
    "static-output",
)


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


def node_finding(name: str, node: onnx.NodeProto, issue: Issue) -> Finding:
    """``issue`` as a finding about ``node``, named ``name``."""
    return Finding(name, node.op_type, node.domain, issue.rule, issue.message, issue.severity)


def model_finding(rule: str, severity: str, message: str) -> Finding:
    """A finding about the whole model rather than one node."""
    return Finding("<model>", "", "", rule, message, severity)


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
    dynamic = (
        "; dynamic: " + ", ".join(d.describe() for d in report.dynamic_dims)
        if report.dynamic_dims
        else ""
    )
    lines.append(
        f"{_verdict(report)} ({counts}; TensorRT {report.table_version} table, opset "
        f"{report.opset}{dynamic})"
    )
    return "\n".join(lines)


def _verdict(report: CheckReport) -> str:
    if report.passed:
        return "PASS: TensorRT's ONNX parser should accept this model"
    if any(f.rule not in DYNAMIC_RULES for f in report.errors):
        return "FAIL: TensorRT's ONNX parser would reject this model"
    return (
        "FAIL: TensorRT's ONNX parser should accept this model, but it runs only "
        "at its export shapes"
    )
