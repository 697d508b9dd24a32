"""``check_model``: the parser's verdict on every node, then the dynamic-dim rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx.inliner

from ..errors import UsageError
from .dtypes import io_type_findings
from .dynamic import dynamic_findings
from .export_shapes import dynamic_dims, export_shapes_problem, metadata_export_shapes
from .load import load_model
from .parser_rules import graph_findings, opset_findings
from .report import CheckReport, Finding, model_finding
from .shapes import graph_input_dims, inferred_value_info
from .table import DEFAULT_DOMAINS, load_op_table


def check_model(
    model: onnx.ModelProto | str | Path, export_shapes: dict[str, Sequence[int]] | None = None
) -> CheckReport:
    """Predict, node by node, whether TensorRT's ONNX parser accepts ``model``, and whether
    its dynamic dims (symbolic input dims) stay dynamic.

    ``model`` is a ModelProto (left unmodified) or a path. ``export_shapes`` ({input name:
    dims}) are the sizes the graph was exported at; without it they are read from the
    metadata key :data:`~.export_shapes.EXPORT_SHAPES_KEY` when present. A missing or
    unreadable file, or export shapes that do not fit the graph's inputs, raise UsageError.
    """
    proto = load_model(model)
    table = load_op_table()
    opset = next((o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS), None)
    findings = opset_findings(proto, opset, table) + io_type_findings(proto.graph)
    export_shapes, warnings = _export_shapes(proto, export_shapes)
    findings += warnings
    proto = _inlined(proto)
    inferred, warnings = _inferred_types(proto)
    findings += warnings
    findings += graph_findings(proto.graph, None, opset or 0, "", table, inferred)
    dims = dynamic_dims(proto.graph, export_shapes)
    findings += dynamic_findings(proto, dims, opset or 0)
    return CheckReport(findings, opset, table["trt_version_documented"], dims)


def _export_shapes(
    proto: onnx.ModelProto, given: dict[str, Sequence[int]] | None
) -> tuple[Any, list[Finding]]:
    """The caller's export shapes (a UsageError if they do not fit), else the metadata's."""
    if given is None:
        return metadata_export_shapes(proto)
    problem = export_shapes_problem(given, graph_input_dims(proto.graph))
    if problem:
        raise UsageError(problem)
    return given, []


def _inlined(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Local functions expanded, as the parser does."""
    if not proto.functions:
        return proto
    try:
        return onnx.inliner.inline_local_functions(proto)
    except Exception as exc:  # noqa: BLE001 - the C++ inliner raises untyped errors
        raise UsageError(f"cannot expand the model's local functions: {exc}") from None


def _inferred_types(proto: onnx.ModelProto) -> tuple[list[onnx.ValueInfoProto], list[Finding]]:
    """What shape inference finds; when it fails, a warning and the declared types only."""
    try:
        return inferred_value_info(proto), []
    except Exception as exc:  # noqa: BLE001 - best effort: rules then use declared types only
        return [], [
            model_finding(
                "types-unknown",
                "warning",
                "ONNX shape inference "
                f"failed ({type(exc).__name__}): type-dependent rules "
                "saw declared types only",
            )
        ]
