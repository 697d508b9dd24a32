"""GCNet: global context block.

Cao et al., ICCVW 2019, https://arxiv.org/abs/1904.11492

One query-independent attention map (a 1x1 conv to one channel, softmax over all pixels)
pools the input into a global context vector; a bottleneck transform (1x1 conv,
LayerNorm, ReLU, 1x1 conv) turns it into a per-channel term that is added to
(``channel_add``) and/or multiplies (``channel_mul``, after a sigmoid) every pixel.
Same class name, keywords, init and ``state_dict`` keys as
awesome-attention-mechanism-in-cv's ``AttentionModule/GCBlock/gcnet.py`` (GCNet's
``ContextBlock``). The context is one MatMul of the flattened input (B, C, HW) with the
softmaxed map (B, HW, 1) rather than the reference's 4-D matmul with an extra unit axis;
``avg`` pooling is a mean over H, W (``ReduceMean``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._layers import bias_of
from ._registry import register_module

POOLING_TYPES = ("avg", "att")
FUSION_TYPES = ("channel_add", "channel_mul")


def bottleneck_transform(inplanes: int, planes: int) -> nn.Sequential:
    """1x1 conv -> LayerNorm over (planes, 1, 1) -> ReLU -> 1x1 conv; last conv zero-initialized."""
    first = nn.Conv2d(inplanes, planes, kernel_size=1)
    last = nn.Conv2d(planes, inplanes, kernel_size=1)
    nn.init.zeros_(last.weight)  # GCNet starts as the identity (its last_zero_init)
    nn.init.zeros_(bias_of(last))
    return nn.Sequential(first, nn.LayerNorm([planes, 1, 1]), nn.ReLU(inplace=True), last)


@register_module(
    "gc",
    kwargs=dict(inplanes=64, ratio=0.0625, pooling_type="att"),
    shapes=[(1, 64, 128, 128)],
    paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
    url="https://arxiv.org/abs/1904.11492",
    dynamic=("batch", "height", "width"),
)
class ContextBlock(nn.Module):
    def __init__(
        self,
        inplanes: int,
        ratio: float,
        pooling_type: str = "att",
        fusion_types: Sequence[str] = ("channel_add",),
    ) -> None:
        super().__init__()
        if pooling_type not in POOLING_TYPES:
            raise ValueError(f"pooling_type must be one of {POOLING_TYPES}; got {pooling_type!r}")
        if not fusion_types or any(f not in FUSION_TYPES for f in fusion_types):
            raise ValueError(
                f"fusion_types must be a non-empty subset of {FUSION_TYPES}; got {fusion_types!r}"
            )
        self.inplanes = inplanes
        self.ratio = ratio
        self.planes = int(inplanes * ratio)
        self.pooling_type = pooling_type
        self.fusion_types = tuple(fusion_types)
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(bias_of(self.conv_mask))
        self.channel_add_conv: nn.Sequential | None = None
        self.channel_mul_conv: nn.Sequential | None = None
        if "channel_add" in fusion_types:
            self.channel_add_conv = bottleneck_transform(inplanes, self.planes)
        if "channel_mul" in fusion_types:
            self.channel_mul_conv = bottleneck_transform(inplanes, self.planes)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling_type == "avg":
            return x.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        weights = torch.softmax(self.conv_mask(x).flatten(1), dim=1)  # (B, 1, H, W) -> (B, HW)
        context = torch.matmul(x.flatten(2), weights.unsqueeze(2))  # (B, C, HW) @ (B, HW, 1)
        return context.unsqueeze(3)  # (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
