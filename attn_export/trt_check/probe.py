"""``breaks-at-other-size``: shape inference again with each dynamic dim at another size, and
the Reshape and Split constants that no longer fit (the export sizes are baked into them,
wherever the symbols were lost). Needs the export sizes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx

from ..parsing import dims_text
from .node import Node, Scope
from .report import DynamicDim
from .shapes import inferred_shapes


def probe_size(dim: DynamicDim) -> int:
    """Another size to try a dynamic dim at: batch (dim 0) one more, other dims twice the
    export size (spatial and token dims often must stay multiples of a window)."""
    assert dim.export_size is not None
    return dim.export_size + 1 if dim.dim == 0 else 2 * dim.export_size


def probe_failures(
    proto: onnx.ModelProto, dims: list[DynamicDim], opset: int
) -> Iterator[tuple[onnx.NodeProto, int, str]]:
    """(node, index, why) for the Reshapes and Splits whose constant operand cannot work once
    the dynamic dims take other sizes."""
    sized = [d for d in dims if d.export_size is not None]
    if not sized:
        return
    probe = {d: probe_size(d) for d in sized}
    shapes = inferred_shapes(proto, probe)
    at = ", ".join(
        f"{d.describe()} = {size} (exported at {d.export_size})" for d, size in probe.items()
    )
    scope = Scope(proto.graph, None)
    for index, node in enumerate(proto.graph.node):
        n = Node(node, scope, opset)
        dims_at_probe = shapes.get(n.input(0)) if n.input(0) else None
        data = [d for d in dims_at_probe or () if isinstance(d, int)]
        if dims_at_probe is None or len(data) != len(dims_at_probe):
            continue
        if n.op == "Reshape":
            why = _reshape_break(n, data)
        elif n.op == "Split":
            why = _split_break(n, data, opset)
        else:
            why = None
        if why:
            yield node, index, f"{why} at {at}"


def _reshape_break(n: Node, data: list[int]) -> str | None:
    """Why the Reshape's constant shape cannot hold ``data``, or None."""
    value = n.value(1)
    if value is None or not value.size:
        return None
    target = [int(t) for t in value.reshape(-1)]
    kept = [
        data[i] if t == 0 and i < len(data) and not n.attr("allowzero", 0) else t
        for i, t in enumerate(target)
    ]
    fixed, count = int(np.prod([k for k in kept if k != -1])), int(np.prod(data))
    if fixed and (count % fixed if -1 in kept else count != fixed):
        return f"shape constant {target} cannot hold its input {dims_text(data)}"
    return None


def _split_break(n: Node, data: list[int], opset: int) -> str | None:
    """Why the Split's constant sizes cannot split ``data`` along its axis, or None."""
    sizes = n.value(1) if opset >= 13 else np.asarray(n.attr("split", []) or [])
    axis = n.attr("axis", 0)
    if sizes is None or not sizes.size or not -len(data) <= axis < len(data):
        return None
    if int(sizes.sum()) == data[axis]:
        return None
    return (
        f"split sizes {sizes.tolist()} (sum {int(sizes.sum())}) "
        f"cannot split dim {axis % len(data)} of size {data[axis]}"
    )
