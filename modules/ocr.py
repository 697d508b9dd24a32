"""OCR: object-contextual representations.

Yuan et al., "Object-Contextual Representations for Semantic Segmentation", ECCV 2020,
https://arxiv.org/abs/1909.11065

``SpatialOCR_Module`` lets every pixel attend over the K object features (B, C, K, 1) that
``ocr_gather`` pools (query from the pixel, key and value from the objects, each a stack of
1x1 conv-BN-ReLU), maps the attended context back to C channels, and fuses it with the
pixel features.
Same class names, keywords and ``state_dict`` keys (``object_context_block.f_pixel.*`` ...,
``conv_bn_dropout.*``) as pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/ObjectContextualRepresentation/OCRModule.py`` (HRNet-OCR).

Differences:
- ``torch.nn.BatchNorm2d`` instead of the reference's outside ``SynchronizedBatchNorm2d``
  (identical in eval); ``bn_type`` is accepted and ignored, as in the reference. With
  ``scale > 1`` the context is upsampled with ``align_corners=True`` (HRNet-OCR's
  ``ALIGN_CORNERS``, which the reference leaves undefined), to the input's own size.
- All products run channel-first, so only the small (B, C', K) object tensors are ever
  transposed: the attention is formed as (B, K, HW), softmaxed over K, and applied as
  ``value (B, C', K) @ sim``. The ``key_channels ** -0.5`` scale is folded into the (small)
  key.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register_module


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """1x1 conv and (BN, ReLU) as two entries: the reference's ``conv, BNReLU`` key layout."""
    bn_relu = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU())
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
        bn_relu,
    ]


class ObjectAttentionBlock2D(nn.Module):
    def __init__(
        self, in_channels: int, key_channels: int, scale: int = 1, bn_type: str | None = None
    ) -> None:
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.key_channels = key_channels
        self.pool = nn.MaxPool2d(kernel_size=(scale, scale))
        self.f_pixel = nn.Sequential(
            *_conv_bn_relu(in_channels, key_channels), *_conv_bn_relu(key_channels, key_channels)
        )
        self.f_object = nn.Sequential(
            *_conv_bn_relu(in_channels, key_channels), *_conv_bn_relu(key_channels, key_channels)
        )
        self.f_down = nn.Sequential(*_conv_bn_relu(in_channels, key_channels))
        self.f_up = nn.Sequential(*_conv_bn_relu(key_channels, in_channels))

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x) if self.scale > 1 else x
        query = self.f_pixel(pooled)  # (B, C', h, w)
        key = self.f_object(proxy).flatten(2) * self.key_channels**-0.5  # (B, C', K)
        value = self.f_down(proxy).flatten(2)  # (B, C', K)
        sim = torch.softmax(
            torch.matmul(key.transpose(1, 2), query.flatten(2)), dim=1
        )  # (B, K, hw), over K
        context = torch.matmul(value, sim).reshape(query.shape)  # (B, C', hw) -> (B, C', h, w)
        context = self.f_up(context)  # (B, C, h, w)
        if self.scale > 1:
            context = F.interpolate(context, size=x.shape[2:], mode="bilinear", align_corners=True)
        return context


@register_module(
    "ocr",
    kwargs=dict(in_channels=512, key_channels=256, out_channels=512, dropout=0.05),
    shapes=[(1, 512, 64, 128), (1, 512, 19, 1)],
    paper="Object-Contextual Representations for Semantic Segmentation",
    url="https://arxiv.org/abs/1909.11065",
    dynamic=("batch", "height", "width"),
    # proxy_feats is (B, C, K, 1): K objects, not an image's height.
    input_axes=[{"batch": 0, "height": 2, "width": 3}, {"batch": 0}],
)
class SpatialOCR_Module(nn.Module):
    def __init__(
        self,
        in_channels: int,
        key_channels: int,
        out_channels: int,
        scale: int = 1,
        dropout: float = 0.1,
        bn_type: str | None = None,
    ) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock2D(
            in_channels, key_channels, scale, bn_type
        )
        self.conv_bn_dropout = nn.Sequential(
            *_conv_bn_relu(2 * in_channels, out_channels), nn.Dropout2d(dropout)
        )

    def forward(self, feats: torch.Tensor, proxy_feats: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(feats, proxy_feats)  # (B, C, H, W)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))  # (B, out_channels, H, W)
