"""OCR's spatial gather: object-region features from coarse class maps.

Yuan et al., "Object-Contextual Representations for Semantic Segmentation", ECCV 2020,
https://arxiv.org/abs/1909.11065

``SpatialGather_Module`` turns coarse class logits (B, K, H, W) into K object regions
(a softmax over the pixels of each class map) and pools the pixel features in each:
(B, C, K, 1), the proxy that ``ocr`` attends over. Same class name and keywords as
pprp/awesome-attention-mechanism-in-cv's
``AttentionModule/ObjectContextualRepresentation/OCRModule.py`` (HRNet-OCR). The product
runs channel-first: ``feats (B, C, HW) @ probs^T (B, HW, K)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "ocr_gather",
    kwargs=dict(cls_num=19),
    shapes=[(1, 512, 64, 128), (1, 19, 64, 128)],
    paper="Object-Contextual Representations for Semantic Segmentation",
    url="https://arxiv.org/abs/1909.11065",
    dynamic=("batch", "height", "width"),
)
class SpatialGather_Module(nn.Module):
    def __init__(self, cls_num: int = 0, scale: float = 1) -> None:
        super().__init__()
        self.cls_num = cls_num  # stored, unused, as in the reference
        self.scale = scale

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        regions = torch.softmax(self.scale * probs.flatten(2), dim=2)  # (B, K, HW), rows sum to 1
        context = torch.matmul(feats.flatten(2), regions.transpose(1, 2))  # (B, C, HW) @ (B, HW, K)
        return context.unsqueeze(3)  # (B, C, K, 1)
