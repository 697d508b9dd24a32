"""ARM: BiSeNet's Attention Refinement Module.

Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
ECCV 2018, https://arxiv.org/abs/1808.00897

ARM reweights a feature map's channels by ``sigmoid(bn(conv1x1(global average)))``. Same
class name, keywords and ``state_dict`` keys as pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/BiSeNet/bisemodel.py`` (ooooverflow/BiSeNet); its sibling block is ``ffm``.

Differences:
- ARM applies its BatchNorm, as the paper does; the reference has it commented out
  (``# x = self.sigmoid(self.bn(x))``), leaving ``bn``'s weights unused.
- The global pool is a mean over H, W (``ReduceMean``).
- ``out_channels != in_channels`` is a usage error at construction instead of an
  ``assert`` in forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from ._registry import register_module


@register_module(
    "arm",
    kwargs=dict(in_channels=256, out_channels=256),
    shapes=[(1, 256, 26, 26)],
    paper="BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
    url="https://arxiv.org/abs/1808.00897",
    dynamic=("batch", "height", "width"),
)
class AttentionRefinementModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels != in_channels:
            raise UsageError(
                "AttentionRefinementModule reweights its input: "
                f"out_channels ({out_channels}) must equal in_channels ({in_channels})"
            )
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        return x * self.sigmoid(self.bn(self.conv(pooled)))
