"""AFF: Attentional Feature Fusion.

Dai et al., WACV 2021, https://arxiv.org/abs/2009.14082

Fuses two feature maps with MS-CAM (see ``ms_cam``, ``_aff.py``): the weights come from
their sum, and ``2 * (x * w + residual * (1 - w))`` is the output. The fusion is
rearranged as ``residual + w * (x - residual)`` (one Sub, one Mul, one Add over the full map
instead of three Muls, one Sub and one Add), the factor 2 applied once.
"""

from __future__ import annotations

import torch

from ._aff import DYNAMIC, PAPER, URL, MSCAMPair, attention_logits
from ._registry import register_module


@register_module(
    "aff",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56), (1, 64, 56, 56)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class AFF(MSCAMPair):
    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        weight = torch.sigmoid(attention_logits(self.local_att, self.global_att, x + residual))
        return 2 * (residual + weight * (x - residual))  # 2 * x * w + 2 * residual * (1 - w)
