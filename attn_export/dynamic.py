"""Dynamic input axes: which dims stay symbolic, and the min/opt/max profile they are checked at.

``--dynamic batch,height`` names axes (see ``DYNAMIC_AXES``); where each sits in an input
comes from the registry (``input_axes``/``layout``) or, for a user's model, from the
input's rank (4-D: NCHW, 3-D: (B, N, C)). The profile, as TensorRT and trtexec take it:

- batch: min 1, opt = ``--shape``, max = max(8, 2 x opt);
- height, width, tokens: min = half of opt, max = 2 x opt, both rounded down to the
  module's spatial multiple (min at least the module's smallest size, never above opt);
- ``--min-shape``/``--opt-shape``/``--max-shape`` replace these, one per forward input.

The graph is verified at min, opt, max and one size in between (an odd batch such as 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .modules._registry import default_axes
from .parsing import PROFILE_BOUNDS, Shape, shape_text

# The smallest default max batch: a batch-1 export is still checked at a serving-sized batch.
MIN_MAX_BATCH = 8


@dataclass(frozen=True)
class InputProfile:
    name: str
    axes: dict[int, str]  # dim -> symbol, e.g. {0: "batch"}
    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dynamic_axes": {str(d): s for d, s in self.axes.items()},
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }


def check_axes_allowed(
    name: str, axes: Sequence[str], allowed: Sequence[str] | None, fixed_because: str
) -> None:
    """A registry module's math may fix some axes; asking for one of them is a usage error."""
    if allowed is None:
        return
    refused = [a for a in axes if a not in allowed]
    if refused:
        why = f": {fixed_because}" if fixed_because else ""
        allows = ", ".join(allowed) or "none"
        raise UsageError(
            f"{name} cannot take a dynamic {', '.join(refused)}{why} (it allows: {allows})"
        )


def axis_maps(
    shapes: Sequence[Shape], registry_axes: Sequence[dict[str, int]] | None, layout: str
) -> list[dict[str, int]]:
    if registry_axes is not None:
        return [dict(a) for a in registry_axes]
    return [default_axes(s, layout) for s in shapes]


def resolve_profiles(
    input_names: Sequence[str],
    shapes: Sequence[Shape],
    axes: Sequence[str],
    maps: Sequence[dict[str, int]],
    multiple: int,
    given: dict[str, Sequence[Shape]],
    min_spatial: int = 1,
) -> list[InputProfile]:
    """One profile per input that carries a requested axis; ``given`` holds --min/opt/max-shape."""
    for axis in axes:
        if not any(axis in m for m in maps):
            raise UsageError(
                f"--dynamic {axis}: no input has a {axis} axis (input ranks: "
                f"{', '.join(str(len(s)) for s in shapes)})"
            )
    profiles = []
    for index, (name, shape, amap) in enumerate(zip(input_names, shapes, maps)):
        dims = {amap[a]: a for a in axes if a in amap}
        if not dims:
            continue
        default = {
            bound: _default_bound(shape, dims, bound, multiple, min_spatial)
            for bound in PROFILE_BOUNDS
        }
        chosen = {bound: _given(given, bound, index, shape) or default[bound] for bound in default}
        _check_profile(name, shape, dims, chosen)
        profiles.append(InputProfile(name, dims, chosen["min"], chosen["opt"], chosen["max"]))
    return profiles


def _default_bound(
    shape: Shape, dims: dict[int, str], bound: str, multiple: int, min_spatial: int
) -> Shape:
    out = list(shape)
    for dim, axis in dims.items():
        size = shape[dim]
        if bound == "opt":
            continue
        if axis == "batch":
            out[dim] = 1 if bound == "min" else max(MIN_MAX_BATCH, 2 * size)
        elif bound == "min":
            # the first multiple of `multiple` that is >= min_spatial
            smallest = -(-max(multiple, min_spatial) // multiple) * multiple
            out[dim] = min(size, max(smallest, size // 2 // multiple * multiple))
        else:
            out[dim] = max(size, 2 * size // multiple * multiple)
    return tuple(out)


def _given(given: dict[str, Sequence[Shape]], bound: str, index: int, shape: Shape) -> Shape | None:
    values = given.get(bound) or ()
    if not values:
        return None
    if len(values) == 1:
        return tuple(values[0])
    if len(values) <= index:
        raise UsageError(f"--{bound}-shape: give one per forward input ({len(values)} given)")
    return tuple(values[index])


def _check_profile(name: str, shape: Shape, dims: dict[int, str], bounds: dict[str, Shape]) -> None:
    for bound, value in bounds.items():
        if len(value) != len(shape):
            raise UsageError(
                f"--{bound}-shape {shape_text(value)} for {name}: rank {len(value)},"
                f" the input has rank {len(shape)}"
            )
        for dim, (size, export_size) in enumerate(zip(value, shape)):
            if dim not in dims and size != export_size:
                raise UsageError(
                    f"--{bound}-shape {shape_text(value)} for {name}: dim {dim} is not dynamic"
                    f" and must stay {export_size}"
                )
    low, opt, high = bounds["min"], bounds["opt"], bounds["max"]
    if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
        raise UsageError(
            f"{name}: the profile needs min <= opt <= max in every dim (min {shape_text(low)},"
            f" opt {shape_text(opt)}, max {shape_text(high)})"
        )


def profile_points(
    profiles: Sequence[InputProfile],
    shapes: Sequence[Shape],
    input_names: Sequence[str],
    multiple: int,
) -> list[tuple[str, list[Shape]]]:
    """(label, one shape per input) at min, opt, max and a size in between."""
    by_name = {p.name: p for p in profiles}

    def at(pick) -> list[Shape]:
        return [pick(by_name[n]) if n in by_name else tuple(s) for n, s in zip(input_names, shapes)]

    points = [
        ("min", at(lambda p: p.min)),
        ("opt", at(lambda p: p.opt)),
        ("max", at(lambda p: p.max)),
        ("between", at(lambda p: _between(p, multiple))),
    ]
    unique: list[tuple[str, list[Shape]]] = []
    for label, point in points:
        if all(point != other for _, other in unique):
            unique.append((label, point))
    return unique


def _between(profile: InputProfile, multiple: int) -> Shape:
    out = list(profile.opt)
    for dim, axis in profile.axes.items():
        low, opt, high = profile.min[dim], profile.opt[dim], profile.max[dim]
        step = 1 if axis == "batch" else multiple
        candidates = [
            s for s in range(low, high + 1, step) if s not in (low, opt, high) and s % step == 0
        ]
        odd = [s for s in candidates if s % 2 == 1]
        if axis == "batch":
            out[dim] = (odd or candidates or [opt])[0]  # an odd batch such as 3
        else:
            out[dim] = min(candidates or [opt], key=lambda s: abs(s - (opt + high) / 2))
    return tuple(out)
