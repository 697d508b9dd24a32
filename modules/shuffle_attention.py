"""Shuffle attention (SA-Net).

Zhang & Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
ICASSP 2021, https://arxiv.org/abs/2102.00240

Channels are split into ``G`` groups and each group into two halves: the first half is
gated per channel (sigmoid of an affine map of its global mean), the second per position
(sigmoid of an affine map of its GroupNorm, one group per channel); the halves are put back
and the channels shuffled across the two halves. Same class name, keywords and
``state_dict`` keys (``cweight``, ``cbias``, ``sweight``, ``sbias``, ``gn``) as
External-Attention-pytorch's ``ShuffleAttention.py`` (``reduction`` is accepted and
unused, as there).

Differences (graph only, same math): both halves are written as one gate
``sigmoid(A * (x - mean) + B)`` over the (B, G, 2, C/2G, H*W) view of the input, with
per-channel coefficients A, B (A = 0 in the channel half, which makes its gate constant
over positions; in the spatial half A and B fold the GroupNorm and the affine map). The
coefficients' parameter parts are stacked in forward (constant-folded on export), so the
graph has no Slice/Split/Concat of activations, no GroupNormalization op, one full-size
multiply for the gate and a single Transpose for the shuffle.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import Parameter

from ._registry import register_module


@register_module(
    "shuffle",
    kwargs=dict(channel=512, G=8),
    shapes=[(1, 512, 7, 7)],
    paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    url="https://arxiv.org/abs/2102.00240",
)
class ShuffleAttention(nn.Module):
    def __init__(self, channel: int = 512, reduction: int = 16, G: int = 8) -> None:
        super().__init__()
        self.G = G
        self.channel = channel
        sub = channel // (2 * G)
        self.gn = nn.GroupNorm(sub, sub)
        self.cweight = Parameter(torch.zeros(1, sub, 1, 1))
        self.cbias = Parameter(torch.ones(1, sub, 1, 1))
        self.sweight = Parameter(torch.zeros(1, sub, 1, 1))
        self.sbias = Parameter(torch.ones(1, sub, 1, 1))
        self.sigmoid = nn.Sigmoid()

    @staticmethod
    def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, groups, c // groups, h * w).transpose(1, 2)  # (B, C/g, g, HW)
        return x.reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        sub = c // (2 * self.G)
        xs = x.reshape(b, self.G, 2, sub, h * w)  # (B, G, [channel half, spatial half], C/2G, HW)
        mean = xs.mean(dim=4, keepdim=True)  # (B, G, 2, C/2G, 1)
        d = xs - mean
        # GroupNorm with one channel per group: per-channel statistics over H*W
        rstd = torch.rsqrt((d * d).mean(dim=4, keepdim=True) + self.gn.eps)

        # per-half coefficients from the parameters, (2, C/2G, 1);
        # index 0 = channel half, 1 = spatial half
        cw, cb = self.cweight.reshape(sub, 1), self.cbias.reshape(sub, 1)
        sw, sb = self.sweight.reshape(sub, 1), self.sbias.reshape(sub, 1)
        gw, gb = self.gn.weight.reshape(sub, 1), self.gn.bias.reshape(sub, 1)
        zero = torch.zeros_like(cw)
        slope = torch.stack([zero, sw * gw])  # multiplies (x - mean) * rstd
        offset = torch.stack([cb, sw * gb + sb])
        mean_coef = torch.stack([cw, zero])  # channel half: cweight * mean + cbias

        gate = self.sigmoid(d * (slope * rstd) + (offset + mean_coef * mean))  # (B, G, 2, C/2G, HW)
        out = (xs * gate).reshape(b, c, h, w)
        return self.channel_shuffle(out, 2)
