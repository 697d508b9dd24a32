"""Polarized Self-Attention, parallel layout.

Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", 2021,
https://arxiv.org/abs/2107.00782

The input gated per channel plus the input gated per position, ``x * (g_ch + g_sp)``; the
gates (and how they differ from External-Attention-pytorch's ``PolarizedSelfAttention.py``)
are in ``_polarized.py``.
"""

from __future__ import annotations

import torch

from ._polarized import DYNAMIC, PAPER, URL, PolarizedGates
from ._registry import register_module


@register_module(
    "polarized_parallel",
    kwargs=dict(channel=512),
    shapes=[(1, 512, 7, 7)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class ParallelPolarizedSelfAttention(PolarizedGates):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xf = x.reshape(b, c, h * w)  # (B, C, H, W) -> (B, C, HW)
        out = xf * (self.channel_weight(xf) + self.spatial_weight(xf))
        return out.reshape(b, c, h, w)
