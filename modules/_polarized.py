"""The channel-only and spatial-only gates of Polarized Self-Attention, which the
``polarized_parallel`` and ``polarized_sequential`` blocks combine.

Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", 2021,
https://arxiv.org/abs/2107.00782

Channel-only branch: a 1-channel query, softmax over the H*W positions, pools the C/2
value channels into one descriptor; a 1x1 conv back to C, LayerNorm and sigmoid give a
per-channel gate. Spatial-only branch: the globally pooled C/2 query, softmax over
channels, weights the C/2 value maps into one map; a sigmoid gives a per-position gate.
The parallel layout sums the two gated inputs; the sequential one gates channels first,
then positions of the channel-gated tensor.

Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``PolarizedSelfAttention.py``. The math is the same, reordered: the 1x1 value/query convs
are linear, so each reduction that follows one in the reference (the softmax-weighted sum
over positions, the global average, the softmax-weighted sum over channels) is done first
or merged into the conv weights; the convs then act on (B, C) vectors, and the products
over the full (C x HW) map left are matrix-vector ones instead of (C/2 x C) @ (C x HW).
The conv biases pass through unchanged because softmax weights sum to 1. Results differ
from the reference only by float summation order.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._layers import bias_of

PAPER = "Polarized Self-Attention: Towards High-quality Pixel-wise Regression"
URL = "https://arxiv.org/abs/2107.00782"
DYNAMIC = ("batch", "height", "width")


def _w(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.flatten(1)  # 1x1 conv weight (C_out, C_in, 1, 1) -> (C_out, C_in)


class PolarizedGates(nn.Module):
    def __init__(self, channel: int = 512) -> None:
        super().__init__()
        self.ch_wv = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))
        self.ch_wq = nn.Conv2d(channel, 1, kernel_size=(1, 1))
        self.softmax_channel = nn.Softmax(1)
        self.softmax_spatial = nn.Softmax(-1)
        self.ch_wz = nn.Conv2d(channel // 2, channel, kernel_size=(1, 1))
        self.ln = nn.LayerNorm(channel)
        self.sigmoid = nn.Sigmoid()
        self.sp_wv = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))
        self.sp_wq = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))

    def channel_weight(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel gate, (B, C, N) -> (B, C, 1)."""
        b, c, n = x.shape
        q = torch.matmul(_w(self.ch_wq), x) + bias_of(self.ch_wq)  # (B, 1, N)
        q = torch.softmax(q, dim=-1).reshape(b, n, 1)  # softmax over positions
        pooled = torch.matmul(x, q).reshape(b, 1, c)  # (B, C, N) @ (B, N, 1) -> (B, 1, C)
        z = F.linear(pooled, _w(self.ch_wv), self.ch_wv.bias)  # (B, 1, C/2)
        z = F.linear(z, _w(self.ch_wz), self.ch_wz.bias)  # (B, 1, C)
        return torch.sigmoid(self.ln(z)).reshape(b, c, 1)  # LayerNorm over C

    def spatial_weight(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position gate, (B, C, N) -> (B, 1, N)."""
        q = F.linear(x.mean(dim=-1), _w(self.sp_wq), self.sp_wq.bias)  # (B, C) -> (B, C/2)
        q = torch.softmax(q, dim=-1).unsqueeze(1)  # (B, 1, C/2): softmax over channels
        # q @ (Wv x + bv) = (q @ Wv) @ x + q . bv
        qw = torch.matmul(q, _w(self.sp_wv))  # (B, 1, C)
        qb = torch.matmul(q, bias_of(self.sp_wv).unsqueeze(-1))  # (B, 1, 1)
        return torch.sigmoid(torch.matmul(qw, x) + qb)  # (B, 1, N)
