"""CCNet: Criss-Cross Attention for Semantic Segmentation.

Huang et al., ICCV 2019, https://arxiv.org/abs/1811.11721

Each position attends to the positions in its own column and its own row (H + W - 1
of them: the position itself is counted once, in the row), with one softmax over both
sets; the attended values are scaled by the learnt ``gamma`` and added to the input.

Same class name, keyword and ``state_dict`` keys as External-Attention-pytorch's
``CrissCrossAttention.py``. Differences, all in how the same math is written:

- The reference builds its self-mask as ``-inf`` on a diagonal repeated B*W times (a
  batch-sized tensor built at run time). Here the column energies get -1e30 added on
  the diagonal of each (H, H) block by an (H, H) mask from ``arange`` (a constant at a
  static size; no EyeLike, which TensorRT takes only at static sizes); ``exp`` underflows
  to exactly 0 for it either way, and no ``inf`` reaches the graph.
- Instead of folding batch into the bmm batch axis with ``permute(...).contiguous().view``
  chains, the column and row attentions are 4-D batched matmuls on permuted views.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "crisscross",
    kwargs=dict(in_dim=64),
    shapes=[(1, 64, 7, 7)],
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation",
    url="https://arxiv.org/abs/1811.11721",
    dynamic=("batch", "height", "width"),
)
class CrissCrossAttention(nn.Module):
    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        q = self.query_conv(x)  # (B, C', H, W)
        k = self.key_conv(x)  # (B, C', H, W)
        v = self.value_conv(x)  # (B, C, H, W)

        # Column energies, e_h[b, j, i, i'] = <q[:, i, j], k[:, i', j]>, self excluded.
        e_h = torch.matmul(q.permute(0, 3, 2, 1), k.permute(0, 3, 1, 2))  # (B, W, H, H')
        rows = torch.arange(h, device=x.device)  # the self mask from arange, not EyeLike
        e_h = e_h + (rows.unsqueeze(1) == rows).to(x.dtype) * -1e30  # (TensorRT: static EyeLike)
        # Row energies, e_w[b, i, j, j'] = <q[:, i, j], k[:, i, j']>.
        e_w = torch.matmul(q.permute(0, 2, 3, 1), k.permute(0, 2, 1, 3))  # (B, H, W, W')

        # One softmax over the H' + W' candidates of each position (b, i, j).
        att = torch.cat([e_h.transpose(1, 2), e_w], dim=-1)  # (B, H, W, H' + W')
        att = torch.softmax(att, dim=-1)
        a_h, a_w = att.split([h, w], dim=-1)

        # out_h[b, c, i, j] = sum_i' a_h[b, i, j, i'] v[b, c, i', j]
        out_h = torch.matmul(v.permute(0, 3, 1, 2), a_h.permute(0, 2, 3, 1))  # (B, W, C, H)
        # out_w[b, c, i, j] = sum_j' a_w[b, i, j, j'] v[b, c, i, j']
        out_w = torch.matmul(v.permute(0, 2, 1, 3), a_w.transpose(2, 3))  # (B, H, C, W)
        return self.gamma * (out_h.permute(0, 2, 3, 1) + out_w.transpose(1, 2)) + x
