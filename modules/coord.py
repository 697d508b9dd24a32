"""Coordinate attention.

Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
https://arxiv.org/abs/2103.02907

The input is pooled along W and along H separately; both strips go through a shared
1x1 conv + BN + h-swish, are split again, and each gives a sigmoid gate (one per row, one
per column) that scales the input. Same class names, keywords and ``state_dict`` keys
(``conv1``, ``bn1``, ``conv_h``, ``conv_w``) as External-Attention-pytorch's
``CoordAttention.py``.

Differences (graph only, same math): the directional pools are means over one axis
(``ReduceMean``) instead of ``AdaptiveAvgPool2d((None, 1))`` / ``((1, None))``; the W strip
is pooled straight into the layout the shared conv needs (its permute only moves a size-1
axis, so it is a reshape); h-swish is ``F.hardswish`` (one ``HardSwish`` op, the same
function as ``x * relu6(x + 3) / 6``); the two gates are combined into one (N, C, H, W)
gate by a batched outer product (MatMul) and applied with one Mul, instead of two
broadcasting Muls (``a_h * a_w`` equals ``a_w * a_h`` up to rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_module


class h_sigmoid(nn.Module):
    def __init__(self, inplace: bool = True) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)  # relu6(x + 3) / 6


class h_swish(nn.Module):
    def __init__(self, inplace: bool = True) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)  # x * relu6(x + 3) / 6


@register_module(
    "coord",
    kwargs=dict(inp=96, oup=96, reduction=32),
    shapes=[(1, 96, 56, 56)],
    paper="Coordinate Attention for Efficient Mobile Network Design",
    url="https://arxiv.org/abs/2103.02907",
    dynamic=("batch", "height", "width"),
)
class CoordAtt(nn.Module):
    def __init__(self, inp: int, oup: int, reduction: int = 32) -> None:
        super().__init__()
        mip = max(8, inp // reduction)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = h_swish()
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # row strip (N, C, H) and column strip (N, C, W), joined: (N, C, H + W, 1)
        y = torch.cat([x.mean(dim=3), x.mean(dim=2)], dim=2).unsqueeze(-1)
        y = self.act(self.bn1(self.conv1(y)))  # (N, mip, H + W, 1)
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # (N, oup, H, 1)
        # (N, oup, W, 1) -> (N, oup, 1, W): moving a size-1 axis is a reshape
        a_w = torch.sigmoid(self.conv_w(y_w)).reshape(n, -1, 1, w)
        # one full-size gate as a batched outer product (MatMul), then one same-shape Mul:
        # on ONNX Runtime about 2x faster than two broadcasting Muls
        return x * torch.matmul(a_h, a_w)
