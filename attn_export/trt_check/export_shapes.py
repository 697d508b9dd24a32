"""The sizes a graph was exported at: recorded in its metadata under :data:`EXPORT_SHAPES_KEY`
(or passed to the check), checked against the graph's inputs, and paired with its dynamic dims."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import onnx

from ..parsing import dims_text
from .report import DynamicDim, Finding, model_finding
from .shapes import Dim, graph_input_dims

#: metadata_props key of the JSON {input name: [dims...]} the graph was exported at
EXPORT_SHAPES_KEY = "attn_export.export_shapes"


def record_export_shapes(model: onnx.ModelProto, shapes: dict[str, Sequence[int]]) -> None:
    """Write the shapes ``model`` was exported at into its metadata (:data:`EXPORT_SHAPES_KEY`)."""
    text = json.dumps({name: [int(d) for d in dims] for name, dims in shapes.items()})
    for prop in model.metadata_props:
        if prop.key == EXPORT_SHAPES_KEY:
            prop.value = text
            return
    model.metadata_props.add(key=EXPORT_SHAPES_KEY, value=text)


def export_shapes_problem(shapes: Any, inputs: dict[str, tuple[Dim, ...] | None]) -> str | None:
    """Why ``shapes`` cannot be the sizes these graph inputs were exported at, or None."""
    if not isinstance(shapes, dict):
        return f"export shapes must map input names to dims, not {type(shapes).__name__}"
    for name, dims in shapes.items():
        if name not in inputs:  # a forward argument the graph does not read
            continue
        if not isinstance(dims, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims
        ):
            return f"export shape of {name!r} must be positive integers, not {dims!r}"
        declared = inputs[name]
        if declared is not None and (
            len(declared) != len(dims)
            or any(isinstance(g, int) and g != d for g, d in zip(declared, dims))
        ):
            return (
                f"export shape {tuple(dims)} of {name!r} does not fit its graph shape "
                f"{dims_text(declared)}"
            )
    return None


def metadata_export_shapes(proto: onnx.ModelProto) -> tuple[Any, list[Finding]]:
    """The export shapes recorded in the metadata (None if absent) and any warning about them."""
    text = next((p.value for p in proto.metadata_props if p.key == EXPORT_SHAPES_KEY), None)
    if text is None:
        return None, []
    try:
        shapes = json.loads(text)
    except (TypeError, ValueError):
        shapes = text
    problem = export_shapes_problem(shapes, graph_input_dims(proto.graph))
    if problem is None:
        return shapes, []
    return None, [
        model_finding(
            "export-shapes-unreadable",
            "warning",
            f"metadata {EXPORT_SHAPES_KEY}: {problem}; checked without export sizes",
        )
    ]


def dynamic_dims(
    graph: onnx.GraphProto, export_shapes: dict[str, Sequence[int]] | None
) -> list[DynamicDim]:
    """The graph inputs' symbolic dims, each with its export size where ``export_shapes`` has it."""
    found = []
    for name, dims in graph_input_dims(graph).items():
        sizes = (export_shapes or {}).get(name)
        for index, dim in enumerate(dims or ()):
            if isinstance(dim, str):
                found.append(DynamicDim(name, index, dim, int(sizes[index]) if sizes else None))
    return found
