"""CBAM: Convolutional Block Attention Module.

Woo et al., ECCV 2018, https://arxiv.org/abs/1807.06521

Channel attention (a shared MLP over global max- and average-pooled descriptors), then
spatial attention (a conv over the channel-wise max and mean maps), plus the residual.
Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``CBAM.py``. Global pools are written as reductions (``amax``/``mean`` over H, W), which
export to ``ReduceMax``/``ReduceMean`` at any static shape.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


class ChannelAttention(nn.Module):
    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(channel // reduction, channel, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        max_pooled = x.amax(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        avg_pooled = x.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        return torch.sigmoid(self.se(max_pooled) + self.se(avg_pooled))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        max_map = x.amax(dim=1, keepdim=True)  # (B, C, H, W) -> (B, 1, H, W)
        avg_map = x.mean(dim=1, keepdim=True)  # (B, C, H, W) -> (B, 1, H, W)
        return torch.sigmoid(self.conv(torch.cat([max_map, avg_map], dim=1)))


@register_module(
    "cbam",
    kwargs=dict(channel=512, reduction=16, kernel_size=7),
    shapes=[(1, 512, 7, 7)],
    paper="CBAM: Convolutional Block Attention Module",
    url="https://arxiv.org/abs/1807.06521",
    dynamic=("batch", "height", "width"),
)
class CBAMBlock(nn.Module):
    def __init__(self, channel: int = 512, reduction: int = 16, kernel_size: int = 49) -> None:
        super().__init__()
        self.ca = ChannelAttention(channel=channel, reduction=reduction)
        self.sa = SpatialAttention(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * self.ca(x)
        out = out * self.sa(out)
        return out + x
