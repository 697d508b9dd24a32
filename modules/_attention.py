"""Pieces shared by the sequence attentions of External-Attention-pytorch.

``SequenceAttention`` is the reference's 5-argument interface, ``forward(queries, keys,
values, attention_mask=None, attention_weights=None)``: the subclass splits its inputs into
heads (``heads``), the heads are mixed (``mix``: by default ``attend``, the masked, weighted
softmax attention the reference writes out in each file) and ``fc_o`` projects the result.
``QKVOProjections`` holds ``fc_q``, ``fc_k``, ``fc_v``, ``fc_o`` and ``dropout`` under the
reference's names (so ``state_dict`` keys match) with the reference's initialisation
(``init_small_linear``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

Heads = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def init_small_linear(*layers: nn.Linear) -> None:
    """The reference attentions' initialisation: weights normal with std 0.001, biases 0."""
    for layer in layers:
        nn.init.normal_(layer.weight, std=0.001)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def split_heads(x: torch.Tensor, h: int, d: int) -> torch.Tensor:
    b, n = x.shape[:2]
    return x.reshape(b, n, h, d).transpose(1, 2)  # (B, N, h*d) -> (B, h, N, d)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)  # (B, h, N, d) -> (B, N, h*d)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    dropout: nn.Module,
    attention_mask: torch.Tensor | None = None,
    attention_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale, weighted, masked) v; q (B, h, Nq, d), k and v (B, h, Nk, d)."""
    att = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, h, Nq, Nk)
    if attention_weights is not None:
        att = att * attention_weights
    if attention_mask is not None:
        att = att.masked_fill(attention_mask, float("-inf"))
    att = dropout(torch.softmax(att, dim=-1))
    return merge_heads(torch.matmul(att, v))  # (B, Nq, h*d_v)


class SequenceAttention(nn.Module):
    """The reference's sequence-attention forward: ``fc_o(mix(heads(queries, keys, values)))``."""

    h: int
    d_k: int
    d_v: int
    scale: float
    fc_o: nn.Linear
    dropout: nn.Dropout

    def heads(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> Heads:
        """(B, N, C) inputs -> q, k, v in heads, (B, h, N, d) each."""
        raise NotImplementedError

    def mix(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attention_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """Heads -> (B, Nq, h*d_v), heads merged."""
        return attend(q, k, v, self.scale, self.dropout, attention_mask, attention_weights)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = self.heads(queries, keys, values)
        return self.fc_o(self.mix(q, k, v, attention_mask, attention_weights))  # (B, Nq, d_model)


class QKVOProjections(nn.Module):
    """The four projections of the reference's multi-head attentions, same names and init."""

    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc_q = nn.Linear(d_model, h * d_k)
        self.fc_k = nn.Linear(d_model, h * d_k)
        self.fc_v = nn.Linear(d_model, h * d_v)
        self.fc_o = nn.Linear(h * d_v, d_model)
        self.dropout = nn.Dropout(dropout)
        self.d_model, self.d_k, self.d_v, self.h = d_model, d_k, d_v, h
        self.scale = 1.0 / math.sqrt(d_k)
        init_small_linear(self.fc_q, self.fc_k, self.fc_v, self.fc_o)

    def project(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q and k in heads, (B, h, N, d_k); v projected, heads not split: (B, Nk, h*d_v)."""
        q = split_heads(self.fc_q(queries), self.h, self.d_k)  # (B, h, Nq, d_k)
        k = split_heads(self.fc_k(keys), self.h, self.d_k)  # (B, h, Nk, d_k)
        return q, k, self.fc_v(values)


class MultiHeadAttention(QKVOProjections, SequenceAttention):
    """Multi-head scaled dot-product attention with q/k/v/o projections."""

    def heads(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> Heads:
        q, k, v = self.project(queries, keys, values)
        return q, k, split_heads(v, self.h, self.d_v)  # v: (B, h, Nk, d_v)
