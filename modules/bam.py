"""BAM: Bottleneck Attention Module.

Park et al., BMVC 2018, https://arxiv.org/abs/1807.06514

A channel branch (global pool, an MLP of Linear + BN + ReLU layers) and a spatial branch
(1x1 reduction, dilated 3x3 convs, 1x1 to one map), summed, passed through a sigmoid, and
applied as ``(1 + weight) * x``. Same class names, keywords and ``state_dict`` keys
(``ca.ca.fc<i>/bn<i>/last_fc``, ``sa.sa.conv_reduce1/bn_reduce1/conv_<i>/bn_<i>/last_conv``)
as External-Attention-pytorch's ``BAM.py``; BatchNorms use their running statistics in
eval mode, as there.

Spatial branch: the golden vectors were made with the BAM.py revision whose README
example is the registry default (512 channels, 7x7, ``dia_val=2``): its dilated 3x3 convs
use ``padding=1`` whatever the dilation, so each one shrinks the map by ``2 * (dia_val - 1)``
and at 7x7 with ``dia_val=2`` the branch ends on a single pixel, broadcast over H, W by
``expand_as`` (a global spatial gate). Later revisions switched to ``padding="same"``. This
module follows the golden revision wherever it runs: ``dia_val=1`` (the two agree), or an
input the stack shrinks to exactly 1x1. For any other input that revision crashes in
``expand_as``; there the dilated convs are padded by ``dia_val`` (the later ``"same"``
behaviour) so every H, W works. The choice depends only on static shapes.

Other differences (graph only, same math): the pool is a mean over H, W (``ReduceMean``)
instead of ``AdaptiveAvgPool2d`` + flatten; the two branch outputs are broadcast against
each other, (B, C, 1, 1) + (B, 1, H', W'), instead of both being ``expand_as``-ed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import GlobalAvgPool
from ._registry import register_module


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class ChannelAttention(nn.Module):
    def __init__(self, channel: int, reduction: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        self.avgpool = GlobalAvgPool()
        gate_channels = [channel] + [channel // reduction] * num_layers + [channel]
        self.ca = nn.Sequential()
        self.ca.add_module("flatten", Flatten())
        for i in range(len(gate_channels) - 2):
            self.ca.add_module(f"fc{i}", nn.Linear(gate_channels[i], gate_channels[i + 1]))
            self.ca.add_module(f"bn{i}", nn.BatchNorm1d(gate_channels[i + 1]))
            self.ca.add_module(f"relu{i}", nn.ReLU())
        self.ca.add_module("last_fc", nn.Linear(gate_channels[-2], gate_channels[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        return self.ca(self.avgpool(x)).reshape(b, c, 1, 1)  # (B, C, H, W) -> (B, C, 1, 1)


class SpatialAttention(nn.Module):
    def __init__(
        self, channel: int, reduction: int = 16, num_layers: int = 3, dia_val: int = 2
    ) -> None:
        super().__init__()
        mid = channel // reduction
        self.num_layers = num_layers
        self.dia_val = dia_val
        self.sa = nn.Sequential()
        self.sa.add_module("conv_reduce1", nn.Conv2d(channel, mid, kernel_size=1))
        self.sa.add_module("bn_reduce1", nn.BatchNorm2d(mid))
        self.sa.add_module("relu_reduce1", nn.ReLU())
        for i in range(num_layers):
            # padding 1 with dilation d, as in the golden revision: shrinks H, W by 2 * (d - 1)
            conv = nn.Conv2d(mid, mid, kernel_size=3, padding=1, dilation=dia_val)
            self.sa.add_module(f"conv_{i}", conv)
            self.sa.add_module(f"bn_{i}", nn.BatchNorm2d(mid))
            self.sa.add_module(f"relu_{i}", nn.ReLU())
        self.sa.add_module("last_conv", nn.Conv2d(mid, 1, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        shrink = self.num_layers * 2 * (self.dia_val - 1)
        # the golden revision's output only broadcasts if nothing shrinks or it ends on 1x1
        keep_size = shrink > 0 and not (h - shrink == 1 and w - shrink == 1)
        y = x
        for layer in self.sa:
            if keep_size and isinstance(layer, nn.Conv2d) and layer.kernel_size[0] == 3:
                # later revisions' padding="same": pad by the dilation, H, W unchanged
                d = layer.dilation
                y = F.conv2d(y, layer.weight, layer.bias, padding=d, dilation=d)
            else:
                y = layer(y)
        return y  # (B, C, H, W) -> (B, 1, H, W), or (B, 1, 1, 1)


@register_module(
    "bam",
    kwargs=dict(channel=512, reduction=16, dia_val=2),
    shapes=[(1, 512, 7, 7)],
    paper="BAM: Bottleneck Attention Module",
    url="https://arxiv.org/abs/1807.06514",
    fixed_because="its dilated convs shrink the map as in the golden revision, whose spatial "
    "gate only broadcasts where they end on 1x1 (the registry size); other sizes pad otherwise",
)
class BAMBlock(nn.Module):
    def __init__(self, channel: int = 512, reduction: int = 16, dia_val: int = 2) -> None:
        super().__init__()
        self.ca = ChannelAttention(channel=channel, reduction=reduction)
        self.sa = SpatialAttention(channel=channel, reduction=reduction, dia_val=dia_val)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sigmoid(self.sa(x) + self.ca(x))  # (B, 1, H|1, W|1) + (B, C, 1, 1)
        return x + weight * x
