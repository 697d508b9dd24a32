"""FFM: BiSeNet's Feature Fusion Module.

Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
ECCV 2018, https://arxiv.org/abs/1808.00897

FFM concatenates the spatial- and context-path features, fuses them with a conv-BN-ReLU
block, and adds the fused map reweighted by an SE-style branch (1x1 conv, ReLU, 1x1 conv,
sigmoid) to itself. Same class names, keywords and ``state_dict`` keys as
pprp/awesome-attention-mechanism-in-cv's ``AttentionModule/BiSeNet/bisemodel.py``
(ooooverflow/BiSeNet); its sibling block is ``arm``.

Differences: the global pool is a mean over H, W (``ReduceMean``), ``f * w + f`` is
``f * (1 + w)``, and a channel mismatch is left to the conv's own error message.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


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
    "ffm",
    kwargs=dict(num_classes=32, in_channels=1024),
    shapes=[(1, 256, 52, 52), (1, 768, 52, 52)],
    paper="BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
    url="https://arxiv.org/abs/1808.00897",
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
