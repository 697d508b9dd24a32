"""AFF: Attentional Feature Fusion (MS-CAM, AFF, iAFF).

Dai et al., WACV 2021, https://arxiv.org/abs/2009.14082

MS-CAM (multi-scale channel attention) adds a point-wise bottleneck on the full map (local
context, conv-BN-ReLU-conv-BN) to the same bottleneck on the global average (global context)
and squashes the sum with a sigmoid. AFF fuses two feature maps with it: the weights come
from their sum, and ``2 * (x * w + residual * (1 - w))`` is the output. iAFF iterates: the first
fusion's output feeds a second MS-CAM, whose weights mix the inputs again.

Same class names, keywords and ``state_dict`` keys (``local_att.*``, ``global_att.*``,
``local_att2.*``, ``global_att2.*``) as pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/AFF`` (from YimianDai/open-aff).

Differences:
- iAFF's second step uses ``global_att2``; the reference calls ``global_att`` again, leaving
  ``global_att2`` unused. The paper's iterative step is a second, separate MS-CAM.
- The global pool is a mean over H, W (``ReduceMean``) instead of ``AdaptiveAvgPool2d(1)``.
- The fusion is rearranged as ``residual + w * (x - residual)`` (one Sub, one Mul, one Add
  over the full map instead of three Muls, one Sub and one Add), AFF's factor 2 applied once.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module

_PAPER = "Attentional Feature Fusion"
_URL = "https://arxiv.org/abs/2009.14082"
_DYNAMIC = ("batch", "height", "width")


def _bottleneck(channels: int, inter_channels: int) -> nn.Sequential:
    """Point-wise conv-BN-ReLU-conv-BN (indices 0..4, as in the reference)."""
    return nn.Sequential(
        nn.Conv2d(channels, inter_channels, kernel_size=1, stride=1, padding=0),
        nn.BatchNorm2d(inter_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(inter_channels, channels, kernel_size=1, stride=1, padding=0),
        nn.BatchNorm2d(channels),
    )


class _GlobalContext(nn.Sequential):
    """The bottleneck on the global average; index 0 stands for the reference's pool."""

    def __init__(self, channels: int, inter_channels: int) -> None:
        super().__init__(nn.Identity(), *_bottleneck(channels, inter_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean(dim=(2, 3), keepdim=True))  # (B, C, H, W) -> (B, C, 1, 1)


def _attention_logits(local_att: nn.Module, global_att: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return local_att(x) + global_att(x)  # (B, C, H, W) + (B, C, 1, 1)


class _MSCAMPair(nn.Module):
    """The local and global MS-CAM branches shared by all three blocks."""

    def __init__(self, channels: int = 64, r: int = 4) -> None:
        super().__init__()
        inter_channels = int(channels // r)
        self.local_att = _bottleneck(channels, inter_channels)
        self.global_att = _GlobalContext(channels, inter_channels)


@register_module(
    "ms_cam",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56)],
    paper=_PAPER,
    url=_URL,
    dynamic=_DYNAMIC,
)
class MS_CAM(_MSCAMPair):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(_attention_logits(self.local_att, self.global_att, x))


@register_module(
    "aff",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56), (1, 64, 56, 56)],
    paper=_PAPER,
    url=_URL,
    dynamic=_DYNAMIC,
)
class AFF(_MSCAMPair):
    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        weight = torch.sigmoid(_attention_logits(self.local_att, self.global_att, x + residual))
        return 2 * (residual + weight * (x - residual))  # 2 * x * w + 2 * residual * (1 - w)


@register_module(
    "iaff",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56), (1, 64, 56, 56)],
    paper=_PAPER,
    url=_URL,
    dynamic=_DYNAMIC,
)
class iAFF(_MSCAMPair):
    def __init__(self, channels: int = 64, r: int = 4) -> None:
        super().__init__(channels, r)
        inter_channels = int(channels // r)
        self.local_att2 = _bottleneck(channels, inter_channels)
        self.global_att2 = _GlobalContext(channels, inter_channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        diff = x - residual
        weight = torch.sigmoid(_attention_logits(self.local_att, self.global_att, x + residual))
        fused = residual + weight * diff  # x * w + residual * (1 - w)
        weight2 = torch.sigmoid(_attention_logits(self.local_att2, self.global_att2, fused))
        return residual + weight2 * diff
