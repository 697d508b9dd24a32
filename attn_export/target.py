"""What to export: a registry name, or ``package.module:attribute`` for a user's own model."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UsageError, first_line
from .layout import channels_last
from .modules import ModuleSpec, UnknownModuleError, get_spec
from .parsing import Shape, shape_text

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class Target:
    """Something that builds an ``nn.Module``, with the defaults it is exported at."""

    name: str  # base name of the artifacts ("" = the built module's class name)
    source: str  # "registry", the import path, or "python object"
    factory: Callable[..., nn.Module]
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    default_shapes: tuple[Shape, ...] | None = None
    atol: float | None = None
    rtol: float | None = None
    paper: str = ""
    spec: ModuleSpec | None = None  # registry entry: dynamic axes, layout, spatial multiple

    def accepted_kwargs(self) -> list[str] | None:
        """Keyword names the factory takes; None when it takes ``**kwargs``."""
        function = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return [
            p.name
            for p in parameters
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]


def resolve_target(name: str) -> Target:
    if _IMPORT_PATH.match(name):
        return _import_target(name)
    if "/" in name or "\\" in name or name.endswith((".py", ".onnx", ".pt", ".pth")):
        raise UsageError(
            f"{name!r} looks like a file path; give a registry name (`attn-export list`)"
            " or an import path like my_package.models:build"
        )
    try:
        spec = get_spec(name)
    except UnknownModuleError as error:
        raise UsageError(str(error)) from None
    return Target(
        name=spec.name,
        source="registry",
        factory=spec.cls,
        default_kwargs=dict(spec.kwargs),
        default_shapes=spec.shapes,
        atol=spec.atol,
        rtol=spec.rtol,
        paper=f"{spec.paper} ({spec.url})",
        spec=spec,
    )


def module_target(module: nn.Module) -> Target:
    """A model the Python API was handed as an object: exported as it is (no build, no seed)."""
    if not isinstance(module, nn.Module):
        raise UsageError(
            "expected a registry name, an import path or a torch.nn.Module,"
            f" got {type(module).__name__}"
        )
    return Target(name="", source="python object", factory=lambda: module)


def _import_target(path: str) -> Target:
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: the user's package in the working folder
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import {module_name!r} from {path!r}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{path!r} is neither an nn.Module class nor a function that builds one")
    # A class names its artifacts; a factory function (often `build`) leaves that to the class
    # it builds.
    return Target(
        name=attribute.split(".")[-1] if inspect.isclass(obj) else "", source=path, factory=obj
    )


def build_module(
    target: Target, overrides: dict[str, Any], seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the module with ``overrides`` over the defaults; weights drawn from ``seed``."""
    accepted = target.accepted_kwargs()
    if accepted is not None:
        unknown = sorted(set(overrides) - set(accepted))
        if unknown:
            raise UsageError(
                f"{target.name} takes no keyword {', '.join(map(repr, unknown))};"
                f" accepted: {', '.join(accepted) or '(none)'}"
            )
    kwargs = {**target.default_kwargs, **overrides}
    if target.source == "python object":
        if overrides:
            raise UsageError(
                "--set/kwargs build a module; a model passed as an object is exported as it is"
            )
        return target.factory().eval(), {}
    torch.manual_seed(seed)  # the same seed gives the same weights, hence byte-identical graphs
    try:
        module = target.factory(**kwargs)
    except Exception as error:  # any failure here comes from the user's arguments
        raise UsageError(
            f"cannot build {target.name} with {_kwargs_text(kwargs)}: {first_line(error)}"
        ) from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"{target.source} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval(), kwargs


def resolve_shapes(
    target: Target, given: Sequence[Shape], module: nn.Module, nhwc: bool = False
) -> list[Shape]:
    """One shape per forward input: ``--shape`` values, or the registry defaults.

    With ``nhwc`` the defaults are turned channel-last (given shapes already are).
    """
    expected_count = len(target.default_shapes) if target.default_shapes else _forward_arity(module)
    if not given:
        if target.default_shapes is None:
            raise UsageError(
                f"{target.name}: give the input shape with --shape, e.g. --shape 1,3,640,640"
            )
        if nhwc and all(len(s) == 4 for s in target.default_shapes):
            return [channels_last(s) for s in target.default_shapes]
        return list(target.default_shapes)
    shapes = list(given)
    if len(shapes) == 1 and expected_count and expected_count > 1:
        shapes = shapes * expected_count  # one --shape for a multi-input module: the same for each
    if expected_count and len(shapes) != expected_count:
        raise UsageError(
            f"{target.name} takes {expected_count} input(s); got {len(shapes)} --shape values"
        )
    if target.default_shapes:
        for index, (shape, default) in enumerate(zip(shapes, target.default_shapes)):
            if len(shape) != len(default):
                raise UsageError(
                    f"{target.name} input {index} must have rank {len(default)}"
                    f" (like {shape_text(default)}); got {shape_text(shape)}"
                )
    return shapes


def forward_parameter_names(module: nn.Module) -> list[str]:
    """Names of the forward's positional parameters (for --inputs arrays named after them)."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _forward_arity(module: nn.Module) -> int | None:
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(
        1
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
