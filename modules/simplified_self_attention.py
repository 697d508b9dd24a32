"""Simplified multi-head self-attention: no Q/K/V projections, only the output projection.

Luo et al., "Simplified Self-Attention for Transformer-based End-to-End Speech
Recognition", https://arxiv.org/abs/2005.10463

The inputs are split into ``h`` heads of ``d_model // h`` channels and used directly as
queries, keys and values. Same class name, keywords, forward signature and ``state_dict``
keys as External-Attention-pytorch's ``SimplifiedSelfAttention.py``. Differences, for
export: head split/merge by ``reshape`` + ``transpose``, and a Python-float scale.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ._registry import register_module


@register_module(
    "simplified_self_attention",
    kwargs=dict(d_model=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="Simplified Self-Attention for Transformer-based End-to-End Speech Recognition",
    url="https://arxiv.org/abs/2005.10463",
)
class SimplifiedScaledDotProductAttention(nn.Module):
    def __init__(self, d_model: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_k = d_model // h
        self.d_v = d_model // h
        self.h = h
        self.fc_o = nn.Linear(h * self.d_v, d_model)
        self.dropout = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(self.d_k)
        # Same initialisation as the reference.
        nn.init.normal_(self.fc_o.weight, std=0.001)
        nn.init.zeros_(self.fc_o.bias)

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
        q = queries.reshape(b, nq, self.h, self.d_k).transpose(1, 2)  # (B, h, Nq, d_k)
        k = keys.reshape(b, nk, self.h, self.d_k).permute(0, 2, 3, 1)  # (B, h, d_k, Nk)
        v = values.reshape(b, nk, self.h, self.d_v).transpose(1, 2)  # (B, h, Nk, d_v)

        att = torch.matmul(q, k) * self.scale  # (B, h, Nq, Nk)
        if attention_weights is not None:
            att = att * attention_weights
        if attention_mask is not None:
            att = att.masked_fill(attention_mask, float("-inf"))
        att = self.dropout(torch.softmax(att, dim=-1))

        out = torch.matmul(att, v).transpose(1, 2).reshape(b, nq, self.h * self.d_v)  # (B, Nq, h*d_v)
        return self.fc_o(out)  # (B, Nq, d_model)
