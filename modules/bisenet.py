"""BiSeNet's attention blocks: Attention Refinement Module and Feature Fusion Module.

Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
ECCV 2018, https://arxiv.org/abs/1808.00897

ARM reweights a feature map's channels by ``sigmoid(bn(conv1x1(global average)))``. FFM
concatenates the spatial- and context-path features, fuses them with a conv-BN-ReLU block,
and adds the fused map reweighted by an SE-style branch (1x1 conv, ReLU, 1x1 conv, sigmoid)
to itself. Same class names, keywords and ``state_dict`` keys as
pprp/awesome-attention-mechanism-in-cv's ``AttentionModule/BiSeNet/bisemodel.py``
(ooooverflow/BiSeNet).

Differences:
- ARM applies its BatchNorm, as the paper does; the reference has it commented out
  (``# x = self.sigmoid(self.bn(x))``), leaving ``bn``'s weights unused.
- Global pools are means over H, W (``ReduceMean``), and FFM's ``f * w + f`` is ``f * (1 + w)``.
- ARM's ``out_channels != in_channels`` is a usage error at construction instead of an
  ``assert`` in forward; FFM leaves a channel mismatch to its conv's own error message.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from ._registry import register_module

_PAPER = "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation"
_URL = "https://arxiv.org/abs/1808.00897"


class ConvBlock(nn.Module):
    """Conv (no bias) - BatchNorm - ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv1(x)))


@register_module(
    "arm",
    kwargs=dict(in_channels=256, out_channels=256),
    shapes=[(1, 256, 26, 26)],
    paper=_PAPER,
    url=_URL,
    dynamic=("batch", "height", "width"),
)
class AttentionRefinementModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels != in_channels:
            raise UsageError(
                f"AttentionRefinementModule reweights its input: out_channels ({out_channels}) must equal in_channels ({in_channels})"
            )
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        return x * self.sigmoid(self.bn(self.conv(pooled)))


@register_module(
    "ffm",
    kwargs=dict(num_classes=32, in_channels=1024),
    shapes=[(1, 256, 52, 52), (1, 768, 52, 52)],
    paper=_PAPER,
    url=_URL,
    dynamic=("batch", "height", "width"),
)
class FeatureFusionModule(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.convblock = ConvBlock(in_channels=in_channels, out_channels=num_classes, stride=1)
        self.conv1 = nn.Conv2d(num_classes, num_classes, kernel_size=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(num_classes, num_classes, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, input_1: torch.Tensor, input_2: torch.Tensor) -> torch.Tensor:
        x = torch.cat((input_1, input_2), dim=1)  # (B, in_channels, H, W)
        feature = self.convblock(x)  # (B, num_classes, H, W)
        pooled = feature.mean(dim=(2, 3), keepdim=True)  # (B, num_classes, 1, 1)
        weight = self.sigmoid(self.conv2(self.relu(self.conv1(pooled))))
        return feature * (1 + weight)  # feature * weight + feature
