"""Small layers and typing helpers several zoo modules share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) as a ReduceMean: exports at any shape, where
    ``AdaptiveAvgPool2d(1)`` needs static sizes. Parameter-free, so it can stand at the
    reference pool's index in an ``nn.Sequential`` without shifting ``state_dict`` keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Mlp(nn.Module):
    """Linear - activation - dropout - Linear - dropout (the transformer blocks' ``Mlp``);
    widths default to ``in_features``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def module_as(module: nn.Module, cls: type[M]) -> M:
    """An ``nn.Sequential`` / ``nn.ModuleList`` entry (typed ``Module``) as the ``cls`` it is."""
    assert isinstance(module, cls), f"expected {cls.__name__}, got {type(module).__name__}"
    return module


def modules_as(modules: Iterable[nn.Module], cls: type[M]) -> list[M]:
    """Every entry of an ``nn.ModuleList`` as the ``cls`` it is."""
    return [module_as(m, cls) for m in modules]


def bias_of(layer: nn.Conv1d | nn.Conv2d | nn.Linear | nn.BatchNorm2d) -> torch.Tensor:
    """The bias of a layer built with one (convs' and norms' biases are typed optional)."""
    assert layer.bias is not None, f"{type(layer).__name__} was built without a bias"
    return layer.bias
