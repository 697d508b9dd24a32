"""Multi-head scaled dot-product attention.

Vaswani et al., "Attention Is All You Need", https://arxiv.org/abs/1706.03762

Same class name, keywords, forward signature (``queries, keys, values, attention_mask=None,
attention_weights=None``) and ``state_dict`` keys as External-Attention-pytorch's
``SelfAttention.py``. Differences, all for export: head split/merge by ``reshape`` +
``transpose`` instead of ``view`` on non-contiguous tensors, and the 1/sqrt(d_k) scale is a
Python float multiply (the reference divides by a NumPy scalar, which the tracer records as
a constant of its own).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "self_attention",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="Attention Is All You Need",
    url="https://arxiv.org/abs/1706.03762",
)
class ScaledDotProductAttention(nn.Module):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc_q = nn.Linear(d_model, h * d_k)
        self.fc_k = nn.Linear(d_model, h * d_k)
        self.fc_v = nn.Linear(d_model, h * d_v)
        self.fc_o = nn.Linear(h * d_v, d_model)
        self.dropout = nn.Dropout(dropout)
        self.d_model = d_model
        self.d_k = d_k
        self.d_v = d_v
        self.h = h
        self.scale = 1.0 / math.sqrt(d_k)
        # Same initialisation as the reference.
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.normal_(fc.weight, std=0.001)
            nn.init.zeros_(fc.bias)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        attention_weights: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        b, nq = queries.shape[:2]
        nk = keys.shape[1]
        q = self.fc_q(queries).reshape(b, nq, self.h, self.d_k).transpose(1, 2)  # (B, h, Nq, d_k)
        k = self.fc_k(keys).reshape(b, nk, self.h, self.d_k).permute(0, 2, 3, 1)  # (B, h, d_k, Nk)
        v = self.fc_v(values).reshape(b, nk, self.h, self.d_v).transpose(1, 2)  # (B, h, Nk, d_v)

        att = torch.matmul(q, k) * self.scale  # (B, h, Nq, Nk)
        if attention_weights is not None:
            att = att * attention_weights
        if attention_mask is not None:
            att = att.masked_fill(attention_mask, float("-inf"))
        att = self.dropout(torch.softmax(att, dim=-1))

        out = torch.matmul(att, v).transpose(1, 2).reshape(b, nq, self.h * self.d_v)  # (B, Nq, h*d_v)
        return self.fc_o(out)  # (B, Nq, d_model)
