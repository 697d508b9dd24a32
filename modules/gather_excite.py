"""Gather-Excite (GE-theta: a learned, global-extent gather).

Hu et al., NeurIPS 2018, https://arxiv.org/abs/1810.12348

Gather: a depthwise conv whose kernel covers the whole map (``spatial`` = H = W, no
padding) and a BatchNorm give one value per channel. Excite: a 1x1-conv bottleneck
(reduction 16, ReLU), a sigmoid, and a per-channel scale of the input. Same class name,
keywords and ``state_dict`` keys as awesome-attention-mechanism-in-cv's
``AttentionModule/GENet/genet.py``, which builds everything on ``out_planes`` (the input's
channels) and ignores ``in_planes``. Its ``F.interpolate(out, out.shape[-1])`` resizes the
1x1 gate to 1x1 and is left out; the gate is broadcast instead. Conv + BatchNorm fold into
one Conv on export.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


class Downblock(nn.Module):
    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.dwconv(x))  # (B, C, S, S) -> (B, C, 1, 1)


@register_module(
    "gather_excite",
    kwargs=dict(in_planes=512, out_planes=512, spatial=16),
    shapes=[(1, 512, 16, 16)],
    paper="Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks",
    url="https://arxiv.org/abs/1810.12348",
    dynamic=("batch",),
    fixed_because="the depthwise gather conv's kernel equals the input size (spatial=16)",
)
class GEModule(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, spatial: int) -> None:
        super().__init__()
        self.downop = Downblock(out_planes, kernel_size=spatial)
        self.mlp = nn.Sequential(
            nn.Conv2d(out_planes, out_planes // 16, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(out_planes // 16, out_planes, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(self.downop(x)))  # gate (B, C, 1, 1)
