"""SK: Selective Kernel attention.

Li et al., CVPR 2019, https://arxiv.org/abs/1903.06586

Parallel conv + BN + ReLU branches with different kernel sizes; their sum is pooled and
squeezed to ``d = max(L, channel // reduction)`` features, from which one linear layer per
branch gives channel logits; a softmax across branches mixes the branch outputs.
Same class name, keywords and ``state_dict`` keys (``convs.<i>.conv/bn``, ``fc``,
``fcs.<i>``) as External-Attention-pytorch's ``SKAttention.py``.

Differences (graph only, same math): the branch outputs are concatenated once into
(B, K, C, H, W) and every later step is a reduction or broadcast on that tensor, instead of
Python ``sum`` plus ``torch.stack``; the K ``fcs`` layers run as one Gemm (their weights are
concatenated in forward, which the exporter constant-folds); pooling is a ``ReduceMean``.
``kernels`` defaults to a tuple instead of the reference's (mutable) list.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ._layers import modules_as
from ._registry import register_module


@register_module(
    "sk",
    kwargs=dict(channel=512, reduction=8),
    shapes=[(1, 512, 7, 7)],
    paper="Selective Kernel Networks",
    url="https://arxiv.org/abs/1903.06586",
    dynamic=("batch", "height", "width"),
)
class SKAttention(nn.Module):
    def __init__(
        self,
        channel: int = 512,
        kernels: Sequence[int] = (1, 3, 5, 7),
        reduction: int = 16,
        group: int = 1,
        L: int = 32,
    ) -> None:
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(channel, channel, k, padding=k // 2, groups=group)),
                        ("bn", nn.BatchNorm2d(channel)),
                        ("relu", nn.ReLU()),
                    ]
                )
            )
            for k in kernels
        )
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList(nn.Linear(self.d, channel) for _ in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = len(self.convs)
        feats = torch.cat([conv(x) for conv in self.convs], dim=1).reshape(b, k, c, h, w)
        s = feats.mean(dim=(3, 4)).sum(dim=1)  # pooled sum of branches: (B, K, C, H, W) -> (B, C)
        z = self.fc(s)  # (B, d)
        # all K branch heads as one linear layer: (B, d) -> (B, K * C)
        fcs = modules_as(self.fcs, nn.Linear)
        weight = torch.cat([fc.weight for fc in fcs], dim=0)
        bias = torch.cat([fc.bias for fc in fcs], dim=0)
        logits = nn.functional.linear(z, weight, bias).reshape(b, k, c, 1, 1)
        attn = torch.softmax(logits, dim=1)  # across branches
        return (attn * feats).sum(dim=1)  # (B, K, C, H, W) -> (B, C, H, W)
