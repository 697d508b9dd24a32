"""SGE: Spatial Group-wise Enhance.

Li et al., "Spatial Group-wise Enhance: Improving Semantic Feature Learning in
Convolutional Networks", 2019, https://arxiv.org/abs/1905.09646

Channels are split into groups; in each group every position's feature is compared (dot
product) with the group's global average feature, the resulting map is normalised over
the positions (mean 0, unbiased std + 1e-5), scaled and shifted by a per-group weight and
bias, and its sigmoid gates the group. Same class name, keyword and ``state_dict`` keys
(``weight``, ``bias``: (1, groups, 1, 1)) as External-Attention-pytorch's ``SGE.py``.

Differences (graph only, same math): the input is viewed once as (B, G, C/G, H*W) instead
of being reshaped back and forth between (B*G, ...) layouts, the per-position dot product
is a batched MatMul with the group's mean vector instead of a full-size Mul + ReduceSum,
the pool is a ``ReduceMean``, the unbiased std is one ``ReduceL2`` scaled by
``1 / sqrt(H*W - 1)``, and the per-group weight and bias broadcast on the (B, G, 1, H*W)
map without reshaping it to (B, G, H, W) and back.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "sge",
    kwargs=dict(groups=8),
    shapes=[(1, 512, 7, 7)],
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional "
    "Networks",
    url="https://arxiv.org/abs/1905.09646",
    dynamic=("batch", "height", "width"),
)
class SpatialGroupEnhance(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g, n = self.groups, h * w
        xg = x.reshape(b, g, c // g, n)  # (B, G, C/G, HW)
        mean = xg.mean(dim=3).unsqueeze(2)  # group's average feature: (B, G, 1, C/G)
        t = torch.matmul(mean, xg)  # similarity per position: (B, G, 1, HW)
        t = t - t.mean(dim=3, keepdim=True)
        # unbiased std as torch.std: ||t|| / sqrt(HW - 1) (one ReduceL2)
        std = torch.linalg.vector_norm(t, dim=3, keepdim=True) * (n - 1) ** -0.5 + 1e-5
        t = t / std * self.weight + self.bias  # (1, G, 1, 1) broadcasts over (B, G, 1, HW)
        return (xg * self.sig(t)).reshape(b, c, h, w)
