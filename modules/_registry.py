"""The module registry: one decorator per attention block, one place to look them up.

A registered class records its registry name, the constructor keywords and input shapes
that ``create_module(name)`` and ``attn-export NAME`` use when nothing else is given, the
paper it implements, and any tolerance overrides for numerical checks.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from torch import nn

Shape = Tuple[int, ...]


class UnknownModuleError(LookupError):
    """Raised for a registry name that is not registered (the message lists close matches)."""


@dataclass(frozen=True)
class ModuleSpec:
    """Everything the registry knows about one attention module."""

    name: str
    cls: Type[nn.Module]
    kwargs: Dict[str, Any]
    shapes: Tuple[Shape, ...]
    paper: str
    url: str
    # ONNX Runtime vs PyTorch fp32 tolerances; None = the exporter's defaults (1e-4 / 1e-4).
    atol: Optional[float] = None
    rtol: Optional[float] = None
    notes: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return self.cls.__name__

    @property
    def num_inputs(self) -> int:
        return len(self.shapes)

    def create(self, **overrides: Any) -> nn.Module:
        return self.cls(**{**self.kwargs, **overrides})


_REGISTRY: Dict[str, ModuleSpec] = {}


def register_module(
    name: str,
    *,
    kwargs: Dict[str, Any],
    shapes: Sequence[Sequence[int]],
    paper: str,
    url: str,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    notes: str = "",
    **extra: Any,
) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    """Class decorator: ``@register_module("cbam", kwargs=..., shapes=[(1, 512, 7, 7)], ...)``.

    ``shapes`` holds one default input shape per forward argument, in order.
    """

    def decorate(cls: Type[nn.Module]) -> Type[nn.Module]:
        assert name not in _REGISTRY, f"registry name {name!r} registered twice"
        assert shapes, f"{name}: at least one input shape is needed"
        _REGISTRY[name] = ModuleSpec(
            name=name,
            cls=cls,
            kwargs=dict(kwargs),
            shapes=tuple(tuple(int(d) for d in s) for s in shapes),
            paper=paper,
            url=url,
            atol=atol,
            rtol=rtol,
            notes=notes,
            extra=dict(extra),
        )
        return cls

    return decorate


def close_matches(name: str, limit: int = 3) -> List[str]:
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


def list_modules(pattern: str = "*") -> List[str]:
    """Registry names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def all_specs() -> List[ModuleSpec]:
    return [_REGISTRY[n] for n in list_modules()]
