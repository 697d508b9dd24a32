"""Optimization profiles: the (min, opt, max) shapes of a graph's dynamic inputs.

Pure Python, checked before TensorRT is imported. A graph input with symbolic dims
(``dim_param``, or no size at all) becomes a TensorRT input with -1 dims, and the builder
needs one optimization profile that gives every such input its (min, opt, max) shapes;
kernels are tuned for opt and valid anywhere in between. :func:`resolve_profile` checks a
profile against the graph. At run time the backend sets each input's shape before each run,
and a shape outside the profile is refused in one line naming the input, the shape and the
range (:func:`input_shape_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import UsageError
from ...parsing import Shape, dims_text

#: (min, opt, max) shapes of one input
ShapeRange = tuple[Shape, Shape, Shape]
#: input name -> (min, opt, max)
Profile = Mapping[str, ShapeRange]
#: a graph input's dims as ONNX declares them: a size, a symbol, or None (unknown)
GraphDims = Sequence[int | str | None]

PROFILE_SELECTORS = ("min", "opt", "max")


def profile_to_json(profile: Profile | None) -> dict[str, dict[str, list[int]]] | None:
    """``{input: {"min": [...], "opt": [...], "max": [...]}}`` sorted by input; None stays None."""
    if not profile:
        return None
    return {
        name: {key: [int(d) for d in shape] for key, shape in zip(PROFILE_SELECTORS, ranges)}
        for name, ranges in sorted(profile.items())
    }


def resolve_profile(
    inputs: Mapping[str, GraphDims | None], profile: Profile | None
) -> dict[str, ShapeRange] | None:
    """The profile to build with: one (min, opt, max) per graph input with dynamic dims.

    ``inputs`` maps each graph input to its ONNX dims (``attn_export.trt_check.graph_input_dims``).
    Raises UsageError, in one line naming the input, when a dynamic input has no entry, an
    entry names no graph input, shapes are malformed, min <= opt <= max fails in some dim, or
    a static dim of the graph is given another size. Entries for static inputs are checked
    and dropped; None when the graph has no dynamic input.
    """
    profile = dict(profile or {})
    unknown = [name for name in profile if name not in inputs]
    if unknown:
        raise UsageError(
            f"profile names {unknown[0]!r}, which is not a graph input"
            f" (inputs: {', '.join(inputs) or 'none'})"
        )
    resolved = {}
    for name, dims in inputs.items():
        if name in profile:
            entry = _profile_entry(name, profile[name], dims)
            if _is_dynamic(dims):
                resolved[name] = entry
        elif _is_dynamic(dims):
            where = "unknown rank" if dims is None else dims_text(dims)
            raise UsageError(
                f"input {name!r} has dynamic dims {where}: building an engine for it needs"
                " a profile with its (min, opt, max) shapes"
            )
    return resolved or None


def input_shape_problem(name: str, shape: Sequence[int], allowed: ShapeRange) -> str | None:
    """Why an engine built with ``allowed`` (min, opt, max) cannot take ``shape``, or None."""
    low, _, high = allowed
    shape = tuple(int(d) for d in shape)
    if len(shape) == len(low) and all(a <= d <= c for a, d, c in zip(low, shape, high)):
        return None
    if low == high:
        return f"input {name!r} has shape {dims_text(shape)}, the engine expects {dims_text(low)}"
    return (
        f"input {name!r} shape {dims_text(shape)} is outside the engine's profile: "
        f"min {dims_text(low)}, max {dims_text(high)}"
    )


def _is_dynamic(dims: GraphDims | None) -> bool:
    return dims is None or any(not isinstance(d, int) or d <= 0 for d in dims)


def _profile_entry(name: str, entry: Any, dims: GraphDims | None) -> ShapeRange:
    """One input's (min, opt, max), checked against itself and the graph's dims."""
    low, opt, high = shapes = _entry_shapes(name, entry)
    if dims is not None:
        for label, shape in zip(PROFILE_SELECTORS, shapes):
            if len(shape) != len(dims):
                raise UsageError(
                    f"profile {label} shape {dims_text(shape)} for input {name!r} has rank "
                    f"{len(shape)}; the graph's input is {dims_text(dims)}"
                )
    if len({len(s) for s in shapes}) != 1:
        raise UsageError(
            f"profile shapes for input {name!r} differ in rank: {', '.join(map(dims_text, shapes))}"
        )
    graph_dims: GraphDims = dims if dims is not None else (None,) * len(low)
    for axis, (a, b, c, fixed) in enumerate(zip(low, opt, high, graph_dims)):
        if not a <= b <= c:
            raise UsageError(
                f"profile for input {name!r} needs min <= opt <= max in every dim; dim {axis}"
                f" has {a}, {b}, {c} (min {dims_text(low)}, opt {dims_text(opt)},"
                f" max {dims_text(high)})"
            )
        if isinstance(fixed, int) and fixed > 0 and not a == c == fixed:
            raise UsageError(
                f"profile for input {name!r} sets dim {axis} to {a}..{c}, but the graph fixes"
                f" it at {fixed} (input {dims_text(graph_dims)})"
            )
    return low, opt, high


def _entry_shapes(name: str, entry: Any) -> ShapeRange:
    """An entry as three shapes of positive ints (numpy ints too), or UsageError."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise UsageError(
            f"profile for input {name!r} must be (min, opt, max) shapes, not {entry!r}"
        )
    shapes = []
    for label, shape in zip(PROFILE_SELECTORS, entry):
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise UsageError(
                f"profile {label} shape for input {name!r} must be positive integers, not {shape!r}"
            )
        shapes.append(tuple(int(d) for d in shape))
    low, opt, high = shapes
    return low, opt, high
