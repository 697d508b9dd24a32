"""ECA: Efficient Channel Attention.

Wang et al., CVPR 2020, https://arxiv.org/abs/1910.03151

Global average pool, a 1-D convolution across neighbouring channels (no dimensionality
reduction), a sigmoid, then a per-channel scale. Same class name, keyword and
``state_dict`` keys (``conv``: a ``Conv1d(1, 1, kernel_size)``) as
External-Attention-pytorch's ``ECAAttention.py``. The pool is a mean over H, W
(``ReduceMean``) and the channel vector is moved with reshapes only (its size-1 axes make
the reference's permutes pure reshapes), so no Transpose reaches the graph.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "eca",
    kwargs=dict(kernel_size=3),
    shapes=[(1, 512, 7, 7)],
    paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    url="https://arxiv.org/abs/1910.03151",
    dynamic=("batch", "height", "width"),
)
class ECAAttention(nn.Module):
    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        y = x.mean(dim=(2, 3)).reshape(b, 1, c)  # (B, C, H, W) -> (B, 1, C): channels as a sequence
        y = torch.sigmoid(self.conv(y))  # (B, 1, C)
        return x * y.reshape(b, c, 1, 1)
