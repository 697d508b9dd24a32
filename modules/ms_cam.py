"""MS-CAM: the multi-scale channel attention module of Attentional Feature Fusion.

Dai et al., WACV 2021, https://arxiv.org/abs/2009.14082

Reweights a map by ``sigmoid(local(x) + global(x))``: a point-wise bottleneck on the full
map plus the same bottleneck on its global average (see ``_aff.py``).
"""

from __future__ import annotations

import torch

from ._aff import DYNAMIC, PAPER, URL, MSCAMPair, attention_logits
from ._registry import register_module


@register_module(
    "ms_cam",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class MS_CAM(MSCAMPair):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(attention_logits(self.local_att, self.global_att, x))
