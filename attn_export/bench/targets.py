"""What to benchmark: registry names or a user's import path, built as export builds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UsageError


@dataclass
class BenchTarget:
    """What to benchmark: a registry name or an import path, as the export command takes them."""

    name: str
    shapes: Sequence[tuple[int, ...]] = ()  # empty: the registry defaults
    kwargs: dict[str, object] = field(default_factory=dict)
    weights: Path | None = None


def build_target(target: BenchTarget) -> tuple[str, torch.nn.Module, list[tuple[int, ...]]]:
    """The module and its input shapes, built exactly as `attn-export NAME` builds them (seed 0)."""
    from ..options import ExportOptions
    from ..pipeline import build

    built = build(
        target.name,
        ExportOptions(
            shapes=list(target.shapes), kwargs=dict(target.kwargs), weights=target.weights
        ),
    )
    return built.name, built.module, built.shapes


def check_selection(names: Sequence[str], all_modules: bool, per_module: bool) -> None:
    """Names or --all, not both; --shape/--set/--weights (``per_module``) with one name only."""
    if not names and not all_modules:
        raise UsageError("name the modules to benchmark, or give --all")
    if names and all_modules:
        raise UsageError(f"give module names or --all, not both (got --all and {' '.join(names)})")
    if per_module and len(names) != 1:
        raise UsageError(
            "--shape, --set and --weights describe one module: give exactly one NAME with them"
        )


def as_target(target: str | BenchTarget) -> BenchTarget:
    return BenchTarget(target) if isinstance(target, str) else target
