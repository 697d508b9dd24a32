"""What the Attentional Feature Fusion family (``ms_cam``, ``aff``, ``iaff``) shares.

Dai et al., "Attentional Feature Fusion", WACV 2021, https://arxiv.org/abs/2009.14082

MS-CAM (multi-scale channel attention) adds a point-wise bottleneck on the full map (local
context, conv-BN-ReLU-conv-BN) to the same bottleneck on the global average (global context)
and squashes the sum with a sigmoid; ``aff`` and ``iaff`` fuse two feature maps with it.
Same class names, keywords and ``state_dict`` keys (``local_att.*``, ``global_att.*``,
``local_att2.*``, ``global_att2.*``) as pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/AFF`` (from YimianDai/open-aff). The global pool is a mean over H, W
(``ReduceMean``) instead of ``AdaptiveAvgPool2d(1)``.
"""

from __future__ import annotations

import torch
from torch import nn

PAPER = "Attentional Feature Fusion"
URL = "https://arxiv.org/abs/2009.14082"
DYNAMIC = ("batch", "height", "width")


def bottleneck(channels: int, inter_channels: int) -> nn.Sequential:
    """Point-wise conv-BN-ReLU-conv-BN (indices 0..4, as in the reference)."""
    return nn.Sequential(
        nn.Conv2d(channels, inter_channels, kernel_size=1, stride=1, padding=0),
        nn.BatchNorm2d(inter_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(inter_channels, channels, kernel_size=1, stride=1, padding=0),
        nn.BatchNorm2d(channels),
    )


class GlobalContext(nn.Sequential):
    """The bottleneck on the global average; index 0 stands for the reference's pool."""

    def __init__(self, channels: int, inter_channels: int) -> None:
        super().__init__(nn.Identity(), *bottleneck(channels, inter_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean(dim=(2, 3), keepdim=True))  # (B, C, H, W) -> (B, C, 1, 1)


def attention_logits(local_att: nn.Module, global_att: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return local_att(x) + global_att(x)  # (B, C, H, W) + (B, C, 1, 1)


class MSCAMPair(nn.Module):
    """The local and global MS-CAM branches shared by all three blocks."""

    def __init__(self, channels: int = 64, r: int = 4) -> None:
        super().__init__()
        inter_channels = int(channels // r)
        self.local_att = bottleneck(channels, inter_channels)
        self.global_att = GlobalContext(channels, inter_channels)
