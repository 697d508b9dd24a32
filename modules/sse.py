"""sSE: the spatial squeeze & excitation gate of scSE.

Roy et al., MICCAI 2018, https://arxiv.org/abs/1803.02579

Gates pixels: a 1x1 conv to one map, a sigmoid. Same as awesome-attention-mechanism-in-cv's
``AttentionModule/scSE``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module
from ._scse import DYNAMIC, PAPER, URL, GatedInput


@register_module(
    "sse",
    kwargs=dict(in_channels=64),
    shapes=[(1, 64, 56, 56)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class sSE(GatedInput):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.Conv1x1 = nn.Conv2d(in_channels, 1, kernel_size=1, bias=False)

    def gate(self, U: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.Conv1x1(U))  # (B, C, H, W) -> (B, 1, H, W)
