"""Split-Attention convolution (ResNeSt).

Zhang et al., "ResNeSt: Split-Attention Networks", https://arxiv.org/abs/2004.08955

One grouped conv makes ``radix`` feature-map splits per cardinal group; their sum is
globally pooled, squeezed by two grouped 1x1 convs to ``radix`` logits per channel, and a
softmax across the splits (a sigmoid when ``radix == 1``) weights them in the output sum.
Same class name, keywords and ``state_dict`` keys (``conv``, ``bn0``/``bn1`` with a
``norm_layer``, ``fc1``, ``fc2``) as pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/ResNeSt/SplitAttention.py`` (zhanghang1989/ResNeSt's ``splat.py``).

Differences (same maths): the splits' sum is pooled as the sum of the pooled splits (one
``ReduceMean`` over the conv output, never a full-size sum of splits); the weighted sum is
one Mul of the whole conv output by the (B, radix*C, 1, 1) weights, then a Split and
radix-1 Adds (ONNX Runtime's ``ReduceSum`` over the radix axis of a 5-D view is slower; README,
"Rewrites for speed"). The reference's optional rectified conv (``rectify``, from the
``rfconv`` package) and DropBlock are not available; asking for them is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import UsageError
from ._registry import register_module

IntPair = int | tuple[int, int]


@register_module(
    "splat",
    kwargs=dict(in_channels=64, channels=64, kernel_size=3, padding=1, bias=False, radix=2),
    shapes=[(1, 64, 56, 56)],
    paper="ResNeSt: Split-Attention Networks",
    url="https://arxiv.org/abs/2004.08955",
    dynamic=("batch", "height", "width"),
)
class SplAtConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: IntPair,
        stride: IntPair = (1, 1),
        padding: IntPair = (0, 0),
        dilation: IntPair = (1, 1),
        groups: int = 1,
        bias: bool = True,
        radix: int = 2,
        reduction_factor: int = 4,
        rectify: bool = False,
        rectify_avg: bool = False,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dropblock_prob: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if rectify and any(p > 0 for p in _pair(padding)):
            raise UsageError(
                "SplAtConv2d: rectify=True needs the rfconv package's RFConv2d, "
                "which is not supported"
            )
        if dropblock_prob > 0.0:
            raise UsageError("SplAtConv2d: dropblock_prob > 0 (DropBlock) is not supported")
        if channels % groups:
            raise UsageError(
                f"SplAtConv2d: channels={channels} must be a multiple of groups={groups}"
            )
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix = radix
        self.cardinality = groups
        self.channels = channels
        self.use_bn = norm_layer is not None
        self.conv = nn.Conv2d(
            in_channels,
            channels * radix,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=groups * radix,
            bias=bias,
            **kwargs,
        )
        if norm_layer is not None:
            self.bn0 = norm_layer(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter_channels, 1, groups=groups)
        if norm_layer is not None:
            self.bn1 = norm_layer(inter_channels)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1, groups=groups)

    def _split_weights(self, gap: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) pooled sum of splits -> (B, radix*C, 1, 1) split weights, split-major."""
        gap = self.fc1(gap)
        if self.use_bn:
            gap = self.bn1(gap)
        logits = self.fc2(self.relu(gap))  # (B, radix*C, 1, 1), ordered (group, split, C/group)
        if self.radix == 1:
            return torch.sigmoid(logits)
        logits = logits.reshape(-1, self.cardinality, self.radix, self.channels // self.cardinality)
        weights = torch.softmax(logits, dim=2).transpose(1, 2)  # (B, radix, groups, C/group)
        return weights.reshape(-1, self.radix * self.channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.use_bn:
            x = self.bn0(x)
        x = self.relu(x)  # (B, radix*C, H, W), split-major
        gap = x.mean(dim=(2, 3)).unflatten(1, (self.radix, self.channels)).sum(1)  # (B, C)
        weighted = x * self._split_weights(gap[:, :, None, None])  # (B, radix*C, H, W)
        splits = weighted.split(self.channels, dim=1)  # radix x (B, C, H, W)
        out = splits[0]
        for split in splits[1:]:
            out = out + split
        return out
