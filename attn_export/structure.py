"""A model's output structure as named graph outputs, and back.

Models return a tensor, or tuples, lists and dicts of them nested at will (a detector's
head: ``(boxes, {"scores": s, "labels": l})``). ONNX has a flat list of named outputs, so
each tensor leaf becomes one output named by its path:

- a single tensor: ``output``;
- under a top-level dict: the keys, joined by dots for deeper levels (``boxes``,
  ``aux.0``);
- under a top-level tuple or list: ``output_<index>``, then dots (``output_1.scores``).

The manifest maps each graph output to its place (the path as a list of keys and
indices). ``None`` leaves are dropped (no tensor to compare); any other non-tensor leaf is
a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import UsageError

PathKey = str | int  # a dict key or a sequence index


@dataclass(frozen=True)
class OutputLeaf:
    name: str
    path: tuple[PathKey, ...]


def flatten_outputs(value: Any) -> list[tuple[tuple[PathKey, ...], torch.Tensor]]:
    """Every tensor leaf of ``value`` with its path, depth first in the model's order."""
    leaves: list[tuple[tuple[PathKey, ...], torch.Tensor]] = []

    def walk(node: Any, path: tuple[PathKey, ...]) -> None:
        if isinstance(node, torch.Tensor):
            leaves.append((path, node))
        elif isinstance(node, dict):
            for key, child in node.items():
                walk(child, path + (str(key),))
        elif isinstance(node, (tuple, list)):
            for index, child in enumerate(node):
                walk(child, path + (index,))
        elif node is not None:
            where = ".".join(map(str, path)) or "the output"
            raise UsageError(
                f"model output {where} is a {type(node).__name__};"
                " only tensors can be graph outputs"
            )

    walk(value, ())
    if not leaves:
        raise UsageError("the model returned no tensor")
    return leaves


def leaf_name(path: tuple[PathKey, ...]) -> str:
    if not path:
        return "output"
    head, rest = path[0], path[1:]
    first = f"output_{head}" if isinstance(head, int) else str(head)
    return ".".join([first, *map(str, rest)])


def output_leaves(value: Any) -> list[OutputLeaf]:
    leaves = [OutputLeaf(leaf_name(path), path) for path, _ in flatten_outputs(value)]
    names = [leaf.name for leaf in leaves]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(
            f"model outputs would share the graph output names {', '.join(duplicates)}"
        )
    return leaves


class FlatOutputs(nn.Module):
    """Wraps a model so that it returns its tensor leaves as one flat tuple (what exporters
    take)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(tensor for _, tensor in flatten_outputs(self.model(*args)))
