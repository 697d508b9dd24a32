"""The module registry: one decorator per attention block, one place to look them up.

A registered class records its registry name, the constructor keywords and input shapes
that ``create_module(name)`` and ``attn-export NAME`` use when nothing else is given, the
paper it implements, and any tolerance overrides for numerical checks.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

Shape = tuple[int, ...]
AxisMap = dict[str, int]  # axis name -> dimension index of one input

# The input axes a graph can leave symbolic (``attn-export --dynamic``): "batch" is dim 0 of
# every input; "height"/"width" the spatial dims of an image input (dims 2, 3 of NCHW; 1, 2
# with layout="NHWC"); "tokens" dim 1 of a (B, N, C) sequence input.
DYNAMIC_AXES = ("batch", "height", "width", "tokens")


def default_axes(shape: Sequence[int], layout: str = "NCHW") -> AxisMap:
    """Where each named axis sits in an input of this rank and layout."""
    if len(shape) == 4:
        return (
            {"batch": 0, "height": 1, "width": 2}
            if layout == "NHWC"
            else {"batch": 0, "height": 2, "width": 3}
        )
    if len(shape) == 3:
        return {"batch": 0, "tokens": 1}
    return {"batch": 0}


class UnknownModuleError(LookupError):
    """Raised for a registry name that is not registered (the message lists close matches)."""


@dataclass(frozen=True)
class ModuleSpec:
    """Everything the registry knows about one attention module."""

    name: str
    cls: type[nn.Module]
    kwargs: dict[str, Any]
    shapes: tuple[Shape, ...]
    paper: str
    url: str
    # ONNX Runtime vs PyTorch fp32 tolerances; None = the exporter's defaults (1e-4 / 1e-4).
    atol: float | None = None
    rtol: float | None = None
    # Axes the module's math leaves free; every other axis is fixed by it (``fixed_because``
    # says why, for the usage error). Spatial sizes must be multiples of ``spatial_multiple``
    # (an int, or a function of the constructor keywords, e.g. a window count).
    dynamic: tuple[str, ...] = ("batch",)
    fixed_because: str = ""
    spatial_multiple: int | Callable[[dict[str, Any]], int] = 1
    # The smallest height/width (or token count) the math takes, e.g. a reflection pad's size + 1.
    min_spatial: int | Callable[[dict[str, Any]], int] = 1
    # Per input: axis name -> dim; None = default_axes(shape, layout) for each input.
    input_axes: tuple[AxisMap, ...] | None = None
    layout: str = "NCHW"

    def axes_of_input(self, index: int, shape: Sequence[int] | None = None) -> AxisMap:
        if self.input_axes is not None:
            return dict(self.input_axes[index])
        return default_axes(shape if shape is not None else self.shapes[index], self.layout)

    def multiple_for(self, kwargs: dict[str, Any]) -> int:
        return self._resolve(self.spatial_multiple, kwargs)

    def min_spatial_for(self, kwargs: dict[str, Any]) -> int:
        return self._resolve(self.min_spatial, kwargs)

    def _resolve(self, value: int | Callable[[dict[str, Any]], int], kwargs: dict[str, Any]) -> int:
        return int(value({**self.kwargs, **kwargs}) if callable(value) else value)

    @property
    def class_name(self) -> str:
        return self.cls.__name__

    def create(self, **overrides: Any) -> nn.Module:
        return self.cls(**{**self.kwargs, **overrides})


_REGISTRY: dict[str, ModuleSpec] = {}


def register_module(
    name: str,
    *,
    kwargs: dict[str, Any],
    shapes: Sequence[Sequence[int]],
    paper: str,
    url: str,
    atol: float | None = None,
    rtol: float | None = None,
    dynamic: Sequence[str] = ("batch",),
    fixed_because: str = "",
    spatial_multiple: int | Callable[[dict[str, Any]], int] = 1,
    min_spatial: int | Callable[[dict[str, Any]], int] = 1,
    input_axes: Sequence[AxisMap] | None = None,
    layout: str = "NCHW",
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``@register_module("cbam", kwargs=..., shapes=[(1, 512, 7, 7)], ...)``.

    ``shapes`` holds one default input shape per forward argument, in order. ``dynamic``
    names the axes (of :data:`DYNAMIC_AXES`) the exported graph may leave symbolic.
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        assert name not in _REGISTRY, f"registry name {name!r} registered twice"
        assert shapes, f"{name}: at least one input shape is needed"
        assert set(dynamic) <= set(DYNAMIC_AXES), f"{name}: unknown dynamic axes {dynamic}"
        assert layout in ("NCHW", "NHWC"), f"{name}: layout {layout!r}"
        _REGISTRY[name] = ModuleSpec(
            name=name,
            cls=cls,
            kwargs=dict(kwargs),
            shapes=tuple(tuple(int(d) for d in s) for s in shapes),
            paper=paper,
            url=url,
            atol=atol,
            rtol=rtol,
            dynamic=tuple(dynamic),
            fixed_because=fixed_because,
            spatial_multiple=spatial_multiple,
            min_spatial=min_spatial,
            input_axes=tuple(dict(a) for a in input_axes) if input_axes is not None else None,
            layout=layout,
        )
        return cls

    return decorate


def close_matches(name: str, limit: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(_REGISTRY), n=limit, cutoff=0.5)


def get_spec(name: str) -> ModuleSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = close_matches(name)
        suggestion = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise UnknownModuleError(
            f"unknown module {name!r}{suggestion} (`attn-export list` shows all {len(_REGISTRY)})"
        ) from None


def create_module(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered module; no keywords = its registry defaults."""
    return get_spec(name).create(**kwargs)


def list_modules(pattern: str = "*") -> list[str]:
    """Registry names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def all_specs() -> list[ModuleSpec]:
    return [_REGISTRY[n] for n in list_modules()]
