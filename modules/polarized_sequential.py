"""Polarized Self-Attention, sequential layout.

Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", 2021,
https://arxiv.org/abs/2107.00782

Gates channels first, then the positions of the channel-gated tensor; the gates (and how
they differ from External-Attention-pytorch's ``PolarizedSelfAttention.py``) are in
``_polarized.py``.
"""

from __future__ import annotations

import torch

from ._polarized import DYNAMIC, PAPER, URL, PolarizedGates
from ._registry import register_module


@register_module(
    "polarized_sequential",
    kwargs=dict(channel=512),
    shapes=[(1, 512, 7, 7)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class SequentialPolarizedSelfAttention(PolarizedGates):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xf = x.reshape(b, c, h * w)  # (B, C, H, W) -> (B, C, HW)
        out = xf * self.channel_weight(xf)
        out = out * self.spatial_weight(out)
        return out.reshape(b, c, h, w)
