"""SimAM: a parameter-free attention module.

Yang et al., ICML 2021, https://proceedings.mlr.press/v139/yang21o.html

Each activation is weighted by a sigmoid of its inverse energy: its squared distance from
the channel mean, normalised by the channel variance (over ``H * W - 1``) plus ``e_lambda``.
Same class name and keywords as External-Attention-pytorch's ``SimAM.py`` (``channels`` is
accepted and unused, as there). Graph only, same math: the per-channel factor
``1 / (4 * (var + lambda))`` is computed once on the (B, C, 1, 1) statistics, as
``(n / 4) / (sum + n * lambda)`` (two nodes instead of four), and applied with a Mul
instead of a full-size Div.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "simam",
    kwargs=dict(channels=64),
    shapes=[(1, 64, 7, 7)],
    paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    url="https://proceedings.mlr.press/v139/yang21o.html",
    dynamic=("batch", "height", "width"),
)
class SimAM(nn.Module):
    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(lambda={self.e_lambda:f})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = x - x.mean(dim=(2, 3), keepdim=True)
        d2 = d * d  # (B, C, H, W)
        # 1 / (4 * (sum / n + lambda)) rewritten as (n / 4) / (sum + n * lambda): (B, C, 1, 1)
        inv = (n / 4) / (d2.sum(dim=(2, 3), keepdim=True) + n * self.e_lambda)
        return x * torch.sigmoid(d2 * inv + 0.5)
