"""Dynamic dims: where a graph with symbolic input dims gets a size baked in.

A graph whose inputs have symbolic dims (``dim_param``) parses either way, but runs only at
its export shapes if the exporter baked a size into it. ONNX shape inference (with data
propagation, symbols flowing as ``dim_param``) finds where a symbol meets a constant size;
the export sizes (:mod:`.export_shapes`) find shape constants that hold one. Rules, all
errors: ``baked-dynamic-dim`` (a Reshape/Expand/Tile/Slice/Resize/Split constant holds the
export size where its data has that symbol; needs export sizes), ``dynamic-dim-dropped`` (a
shape op turns a symbolic dim static), ``dynamic-dim-fixed`` (a symbol meets a constant size
in a broadcast, Concat or MatMul: this is also where a baked ConstantOfShape or constant
tensor shows), ``breaks-at-other-size`` (:mod:`.probe`) and ``static-output``.
Size-1 export sizes are never matched (every unsqueeze holds a 1): export at sizes > 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import onnx

from ..parsing import dims_text
from .node import Issue, Node, Scope, error
from .probe import probe_failures
from .report import DynamicDim, Finding, model_finding, node_finding
from .shapes import Dim, inferred_shapes

# Elementwise ops whose inputs broadcast against each other (right-aligned dims).
_BROADCAST_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "PRelu",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
}
# Ops whose output keeps the data input's axes in place (a static output dim where the
# data had a symbol means the op's constant operand replaced it).
_AXIS_KEEPING_OPS = {"Tile", "Slice", "Resize", "Split", "Pad"}


class SymbolicShapes:
    """Symbolic shapes of every tensor, and the export sizes a constant may have baked in."""

    def __init__(self, dims: list[DynamicDim], shapes: dict[str, tuple[Dim, ...]]) -> None:
        self.dims = dims
        self.shapes = shapes
        self.by_symbol: dict[str, DynamicDim] = {}
        for dim in dims:
            self.by_symbol.setdefault(dim.symbol, dim)
        self.sizes = _bakeable_sizes(dims)

    def shape(self, name: str) -> tuple[Dim, ...] | None:
        return self.shapes.get(name) if name else None

    def symbol(self, dim: Dim) -> DynamicDim | None:
        return self.by_symbol.get(dim) if isinstance(dim, str) else None

    def baked(self, value: int, against: Dim) -> str | None:
        """What ``value`` is the export size of, at a position where the data has ``against``.

        Only the export size of that very symbol (or a product with it) counts: compared with
        every export size, shape constants after a reshape that loses the symbols match head
        counts and window sizes by coincidence (seen on the zoo: halo, moa).
        """
        known = self.symbol(against)
        if known is None:
            return None
        for size, what, symbols in self.sizes:
            if value == size and known.symbol in symbols:
                return what
        return None


def _bakeable_sizes(dims: list[DynamicDim]) -> list[tuple[int, str, set[str]]]:
    """(value, what, symbols) for every size a baked constant could hold: each dynamic dim's
    export size, and the product of two dynamic dims of one input (H*W tokens). Size 1 is left
    out: it is every unsqueeze and broadcast constant."""
    sized = [(d, d.export_size) for d in dims if d.export_size is not None]
    sizes = [(size, f"the export size of {d.describe()}", {d.symbol}) for d, size in sized]
    for i, (a, a_size) in enumerate(sized):
        for b, b_size in sized[i + 1 :]:
            if a.input == b.input:
                sizes.append(
                    (
                        a_size * b_size,
                        f"the export size of "
                        f"input {a.input!r} dims {a.dim}*{b.dim} "
                        f"({a.symbol}*{b.symbol})",
                        {a.symbol, b.symbol},
                    )
                )
    return [s for s in sizes if s[0] > 1]


def _shape_operands(n: Node, dyn: SymbolicShapes) -> Iterator[tuple[str, list[int], list[Dim]]]:
    """(label, constant values, the data dim each value stands against) per shape operand."""
    op, data = n.op, dyn.shape(n.input(0)) or ()

    def values(index: int) -> list[int] | None:
        value = n.value(index) if n.input(index) else None
        if value is None or value.dtype.kind not in "iu":
            return None
        return [int(v) for v in value.reshape(-1)]

    def left(count: int) -> list[Dim]:
        return [data[i] if i < len(data) else None for i in range(count)]

    def at_axes(axes: Sequence[int]) -> list[Dim]:
        rank = len(data)
        return [data[a % rank] if rank and -rank <= a < rank else None for a in axes]

    if op == "Reshape" and (shape := values(1)):
        yield "shape constant", shape, left(len(shape))
    elif op == "Expand" and (shape := values(1)):
        pad = len(shape) - len(data)
        yield (
            "shape constant",
            shape,
            [data[i - pad] if i >= pad else None for i in range(len(shape))],
        )
    elif op == "Tile" and (repeats := values(1)):
        yield "repeats constant", repeats, left(len(repeats))
    elif op == "Resize" and n.opset >= 11 and (sizes := values(3)):
        axes = n.attr("axes")
        yield "sizes constant", sizes, at_axes(axes) if axes else left(len(sizes))
    elif op == "Slice" and n.opset >= 10:
        slice_axes = values(3)
        for index, label in ((1, "starts constant"), (2, "ends constant")):
            if (bounds := values(index)) is not None:
                yield label, bounds, at_axes(slice_axes if slice_axes else range(len(bounds)))
    elif op == "Split":
        split = values(1) if n.opset >= 13 else list(n.attr("split", []) or [])
        if split:
            yield "split sizes", split, at_axes([n.attr("axis", 0)]) * len(split)


def _baked_constants(n: Node, dyn: SymbolicShapes) -> Iterator[Issue]:
    """Shape constants that hold a dynamic dim's export size where the data has that dim."""
    for label, values, against in _shape_operands(n, dyn):
        held = []
        for value, dim in zip(values, against):
            what = dyn.baked(value, dim) if value > 1 else None
            if what and f"{value} = {what}" not in held:
                held.append(f"{value} = {what}")
        if held:
            yield error(
                "baked-dynamic-dim", f"{label} {values} holds {'; '.join(held)}, which is dynamic"
            )


def _dropped_dims(n: Node, dyn: SymbolicShapes) -> Iterator[Issue]:
    """A shape op that turns a dynamic dim of its data into a constant size."""
    data = dyn.shape(n.input(0))
    symbols = [dyn.symbol(d) for d in data or ()]
    if data is None or not any(symbols):
        return
    first = symbols[0]
    leading = n.value(1) if n.op == "Reshape" and first else None
    if leading is not None and leading.dtype.kind in "iu" and leading.size and leading.flat[0] > 1:
        assert first is not None  # leading is read only where dim 0 is symbolic
        # 0 (copy) or -1 keeps a dynamic leading dim; a size > 1 replaces it by a constant
        yield error(
            "dynamic-dim-dropped",
            f"shape constant {leading.tolist()} fixes dim 0 to "
            f"{int(leading.flat[0])} where its data has {first.describe()}: the "
            "graph runs only at the export size",
        )
        return
    for output in n.proto.output:
        out = dyn.shape(output)
        if out is None:
            continue
        if n.op == "Reshape" and all(isinstance(d, int) for d in out):
            lost = ", ".join(s.describe() for s in dict.fromkeys(filter(None, symbols)))
            yield error(
                "dynamic-dim-dropped",
                f"reshapes {dims_text(data)} to the static "
                f"{dims_text(out)}: {lost} is dropped, so the graph runs only at "
                "the export size",
            )
            return
        if n.op in _AXIS_KEEPING_OPS and len(out) == len(data):
            for symbol, dim in zip(symbols, out):
                if symbol and isinstance(dim, int):
                    yield error(
                        "dynamic-dim-dropped",
                        f"turns {symbol.describe()} into the "
                        f"constant {dim}: the graph runs only at that size",
                    )
                    return


def _right_aligned(shape: Sequence[Dim], rank: int) -> list[Dim]:
    return [None] * (rank - len(shape)) + list(shape[-rank:] if rank else [])


def _unified_dims(
    op: str, axis: int, inputs: list[tuple[Dim, ...]], out: tuple[Dim, ...]
) -> list[tuple[Dim, Dim]]:
    """(input dim, the dim it was unified with) wherever ``op`` makes two dims agree."""
    pairs: list[tuple[Dim, Dim]] = []
    if op in _BROADCAST_OPS or op == "Expand":
        for shape in inputs:
            pairs += zip(_right_aligned(shape, len(out)), out)
    elif op == "Concat":
        axis = axis % len(out) if out else 0
        for shape in inputs:
            if len(shape) == len(out):
                pairs += [(d, o) for i, (d, o) in enumerate(zip(shape, out)) if i != axis]
    elif op == "MatMul" and len(inputs) == 2:
        a, b = inputs
        if len(a) >= 2 and len(b) >= 2:  # contracted dims must agree
            pairs += [(a[-1], b[-2]), (b[-2], a[-1])]
            batch = len(out) - 2
            for shape in (a, b):
                pairs += zip(_right_aligned(shape[:-2], batch), out[:batch])
    return pairs


def _fixed_dims(n: Node, dyn: SymbolicShapes) -> Iterator[Issue]:
    """A dynamic dim that meets a constant size (broadcast, concat, matmul) and takes it."""
    shapes = [dyn.shape(name) for name in n.proto.input if name]
    inputs = [shape for shape in shapes if shape is not None]
    out = dyn.shape(n.proto.output[0]) if n.proto.output else None
    if out is None or not inputs:
        return
    for dim, size in _unified_dims(n.op, n.attr("axis", 0), inputs, out):
        symbol = dyn.symbol(dim)
        if symbol and isinstance(size, int) and size != 1:
            yield error(
                "dynamic-dim-fixed",
                f"{symbol.describe()} meets a constant size "
                f"{size} here, which fixes it: the graph runs only at "
                f"{symbol.symbol} = {size}",
            )
            return


def _static_outputs(graph: onnx.GraphProto, dyn: SymbolicShapes) -> list[Finding]:
    findings = []
    inputs = ", ".join(d.describe() for d in dyn.dims)
    for output in graph.output:
        shape = dyn.shape(output.name)
        if shape and all(isinstance(d, int) for d in shape):
            findings.append(
                Finding(
                    f"<output {output.name}>",
                    "",
                    "",
                    "static-output",
                    f"comes out static {dims_text(shape)} though {inputs} "
                    "is dynamic: a dynamic dim was fixed on the way",
                    "error",
                )
            )
    return findings


def dynamic_findings(proto: onnx.ModelProto, dims: list[DynamicDim], opset: int) -> list[Finding]:
    """Where the main graph gets a dynamic dim fixed; nothing for a static graph."""
    if not dims:
        return []
    try:
        shapes = inferred_shapes(proto)
    except Exception as exc:  # noqa: BLE001 - the C++ inference raises untyped errors
        return [
            model_finding(
                "dynamic-dims-unchecked",
                "warning",
                f"ONNX shape inference failed ({type(exc).__name__}): dynamic dims not checked",
            )
        ]
    dyn = SymbolicShapes(dims, shapes)
    scope = Scope(proto.graph, None)
    findings = []
    for index, node in enumerate(proto.graph.node):
        n = Node(node, scope, opset)
        name = node.name or f"{node.op_type}#{index}"
        issues = [*_baked_constants(n, dyn), *_dropped_dims(n, dyn), *_fixed_dims(n, dyn)]
        findings += [node_finding(name, node, i) for i in issues]
    flagged = {f.node for f in findings}
    try:
        failures = list(probe_failures(proto, dims, opset))
    except Exception:  # noqa: BLE001 - inference at the probe sizes is a bonus, not a must
        failures = []
    for node, index, message in failures:
        name = node.name or f"{node.op_type}#{index}"
        if name not in flagged:  # one finding per node: the others already say why
            findings.append(
                Finding(name, node.op_type, node.domain, "breaks-at-other-size", message, "error")
            )
    return findings + _static_outputs(proto.graph, dyn)
