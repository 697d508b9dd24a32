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

import torch
from torch import nn

from ._attention import Heads, SequenceAttention, init_small_linear, split_heads
from ._registry import register_module


@register_module(
    "simplified_self_attention",
    kwargs=dict(d_model=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="Simplified Self-Attention for Transformer-based End-to-End Speech Recognition",
    url="https://arxiv.org/abs/2005.10463",
    dynamic=("batch", "tokens"),
)
class SimplifiedScaledDotProductAttention(SequenceAttention):
    def __init__(self, d_model: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_k = d_model // h
        self.d_v = d_model // h
        self.h = h
        self.fc_o = nn.Linear(h * self.d_v, d_model)
        self.dropout = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(self.d_k)
        init_small_linear(self.fc_o)

    def heads(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> Heads:
        q = split_heads(queries, self.h, self.d_k)  # (B, Nq, d_model) -> (B, h, Nq, d_k)
        k = split_heads(keys, self.h, self.d_k)  # (B, h, Nk, d_k)
        v = split_heads(values, self.h, self.d_v)  # (B, h, Nk, d_v)
        return q, k, v
