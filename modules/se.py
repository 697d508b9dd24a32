"""SE: Squeeze-and-Excitation channel attention.

Hu et al., CVPR 2018, https://arxiv.org/abs/1709.01507

Global average pool, a two-layer bottleneck MLP with a sigmoid, then a per-channel scale.
Same class name, keywords and ``state_dict`` keys (``fc.0``, ``fc.2``) as
External-Attention-pytorch's ``SEAttention.py``. The pool is written as a mean over H, W
(``ReduceMean``) instead of ``AdaptiveAvgPool2d``, and the gate is broadcast rather than
``expand_as``-ed, so the exported graph is ReduceMean -> MatMul -> Relu -> MatMul -> Sigmoid
-> Reshape -> Mul.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "se",
    kwargs=dict(channel=512, reduction=8),
    shapes=[(1, 512, 7, 7)],
    paper="Squeeze-and-Excitation Networks",
    url="https://arxiv.org/abs/1709.01507",
    dynamic=("batch", "height", "width"),
)
class SEAttention(nn.Module):
    def __init__(self, channel: int = 512, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        y = self.fc(x.mean(dim=(2, 3)))  # (B, C, H, W) -> (B, C)
        return x * y.reshape(b, c, 1, 1)
