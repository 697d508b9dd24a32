"""Residual Attention: A Simple but Effective Method for Multi-Label Recognition (CSRA).

Zhu and Wu, ICCV 2021, https://arxiv.org/abs/2108.02456

A 1x1 conv gives per-class score maps; the class score is their spatial average plus
``la`` times their spatial maximum (class-specific residual attention).

Same class name, keywords and ``state_dict`` keys as External-Attention-pytorch's
``ResidualAttention.py``. The score maps are pooled with ``mean``/``amax`` reductions over
H, W (``ReduceMean``/``ReduceMax`` on export) instead of ``flatten`` + ``torch.max(...)[0]``,
whose indices output is not needed.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "residual",
    kwargs=dict(channel=512, num_class=1000, la=0.2),
    shapes=[(1, 512, 7, 7)],
    paper="Residual Attention: A Simple but Effective Method for Multi-Label Recognition",
    url="https://arxiv.org/abs/2108.02456",
    dynamic=("batch", "height", "width"),
)
class ResidualAttention(nn.Module):
    def __init__(self, channel: int = 512, num_class: int = 1000, la: float = 0.2) -> None:
        super().__init__()
        self.la = la
        self.fc = nn.Conv2d(channel, num_class, kernel_size=1, stride=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)  # (B, C, H, W) -> (B, num_class, H, W)
        return y.mean(dim=(2, 3)) + self.la * y.amax(dim=(2, 3))  # (B, num_class)
