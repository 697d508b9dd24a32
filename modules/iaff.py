"""iAFF: iterative Attentional Feature Fusion.

Dai et al., WACV 2021, https://arxiv.org/abs/2009.14082

A first fusion as in ``aff`` (without the factor 2) feeds a second MS-CAM, whose weights mix
the inputs again. The second step uses ``local_att2`` and ``global_att2``; the reference
calls ``global_att`` again, leaving ``global_att2`` unused. The paper's iterative step is a
second, separate MS-CAM. Each fusion is ``residual + w * (x - residual)``.
"""

from __future__ import annotations

import torch

from ._aff import DYNAMIC, PAPER, URL, GlobalContext, MSCAMPair, attention_logits, bottleneck
from ._registry import register_module


@register_module(
    "iaff",
    kwargs=dict(channels=64, r=4),
    shapes=[(1, 64, 56, 56), (1, 64, 56, 56)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class iAFF(MSCAMPair):
    def __init__(self, channels: int = 64, r: int = 4) -> None:
        super().__init__(channels, r)
        inter_channels = int(channels // r)
        self.local_att2 = bottleneck(channels, inter_channels)
        self.global_att2 = GlobalContext(channels, inter_channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        diff = x - residual
        weight = torch.sigmoid(attention_logits(self.local_att, self.global_att, x + residual))
        fused = residual + weight * diff  # x * w + residual * (1 - w)
        weight2 = torch.sigmoid(attention_logits(self.local_att2, self.global_att2, fused))
        return residual + weight2 * diff
