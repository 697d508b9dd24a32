"""scSE: Concurrent Spatial and Channel Squeeze & Excitation.

Roy et al., MICCAI 2018, https://arxiv.org/abs/1803.02579

``csSE`` adds the input recalibrated by the channel gate (``cse``, with the paper's ReLU
that the reference drops) to the input recalibrated by the spatial gate (``sse``). It sums
the two gates before multiplying (``U * (g_c + g_s)``): two full-size elementwise ops
instead of the reference's three, the same result.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module
from ._scse import DYNAMIC, PAPER, URL
from .cse import cSE
from .sse import sSE


@register_module(
    "scse",
    kwargs=dict(in_channels=64),
    shapes=[(1, 64, 56, 56)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class csSE(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.cSE = cSE(in_channels)
        self.sSE = sSE(in_channels)

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        # U * g_c + U * g_s, with the gates summed first: one full-size Mul fewer
        return U * (self.cSE.gate(U) + self.sSE.gate(U))  # (B, C, 1, 1) + (B, 1, H, W)
