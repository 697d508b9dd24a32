"""ParNet attention: the RepVGG-SSE block of ParNet.

Goyal et al., "Non-deep Networks", NeurIPS 2022, https://arxiv.org/abs/2110.07641

A 1x1 conv + BN branch, a 3x3 conv + BN branch and a skip-squeeze-excitation branch
(global pool, 1x1 conv, sigmoid, scale), summed and passed through SiLU. Same class name,
keyword and ``state_dict`` keys (``sse.1``, ``conv1x1.0/1``, ``conv3x3.0/1``) as
External-Attention-pytorch's ``ParNetAttention.py``. The pool in ``sse`` is a mean over H, W
(``ReduceMean``) instead of ``AdaptiveAvgPool2d``, still at index 0 so the conv keeps the
key ``sse.1``. In eval mode the BatchNorms fold into their convs in the exported graph.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import GlobalAvgPool
from ._registry import register_module


@register_module(
    "parnet",
    kwargs=dict(channel=512),
    shapes=[(1, 512, 7, 7)],
    paper="Non-deep Networks",
    url="https://arxiv.org/abs/2110.07641",
    dynamic=("batch", "height", "width"),
)
class ParNetAttention(nn.Module):
    def __init__(self, channel: int = 512) -> None:
        super().__init__()
        self.sse = nn.Sequential(
            GlobalAvgPool(),
            nn.Conv2d(channel, channel, kernel_size=1),
            nn.Sigmoid(),
        )
        self.conv1x1 = nn.Sequential(
            nn.Conv2d(channel, channel, kernel_size=1), nn.BatchNorm2d(channel)
        )
        self.conv3x3 = nn.Sequential(
            nn.Conv2d(channel, channel, kernel_size=3, padding=1), nn.BatchNorm2d(channel)
        )
        self.silu = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.silu(self.conv1x1(x) + self.conv3x3(x) + self.sse(x) * x)
