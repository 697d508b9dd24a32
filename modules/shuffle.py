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

Differences (graph only, same math): the spatial half's GroupNorm and the affine map after
it are one ``InstanceNormalization`` whose scale and bias fold ``gn``'s and ``sweight``/``sbias``
(computed in forward from the parameters; constant-folded on export), and the channel
half's affine gate works on its (B*G, C/2G, 1) means. The naive export's separate affine
Mul/Add and the GroupNorm reshapes are gone (speed: README, "Rewrites for speed").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import Parameter

from ._registry import register_module


@register_module(
    "shuffle",
    kwargs=dict(channel=512, G=8),
    shapes=[(1, 512, 7, 7)],
    paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    url="https://arxiv.org/abs/2102.00240",
    dynamic=("batch", "height", "width"),
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
        # (B, C, H, W) -> (B*G, [channel half | spatial half], HW)
        x0, x1 = x.reshape(b * self.G, 2 * sub, h * w).split(sub, dim=1)
        # channel half: sigmoid(cweight * mean + cbias), one gate per channel
        mean = x0.mean(dim=2, keepdim=True)  # (B*G, C/2G, 1)
        gate0 = self.sigmoid(self.cweight.reshape(sub, 1) * mean + self.cbias.reshape(sub, 1))
        # spatial half: sweight * GroupNorm(x1) + sbias, GroupNorm having one channel per group
        sw = self.sweight.reshape(sub)
        scale, shift = sw * self.gn.weight, sw * self.gn.bias + self.sbias.reshape(sub)
        y1 = F.instance_norm(x1, weight=scale, bias=shift, eps=self.gn.eps)  # (B*G, C/2G, HW)
        out = torch.cat([x0 * gate0, x1 * self.sigmoid(y1)], dim=1)  # (B*G, C/G, HW)
        return self.channel_shuffle(out.reshape(b, c, h, w), 2)
