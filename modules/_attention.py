"""Pieces shared by the sequence attentions of External-Attention-pytorch.

``QKVOProjections`` holds ``fc_q``, ``fc_k``, ``fc_v``, ``fc_o`` and ``dropout`` under the
reference's names (so ``state_dict`` keys match) with the reference's initialisation
(normal, std 0.001; zero biases). ``attend`` is the masked, weighted softmax attention the
reference writes out in each file.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
    """softmax(q kᵀ · scale, weighted, masked) v with q (B, h, Nq, d), k (B, h, Nk, d), v (B, h, Nk, d_v)."""
    att = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, h, Nq, Nk)
    if attention_weights is not None:
        att = att * attention_weights
    if attention_mask is not None:
        att = att.masked_fill(attention_mask, float("-inf"))
    att = dropout(torch.softmax(att, dim=-1))
    return merge_heads(torch.matmul(att, v))  # (B, Nq, h*d_v)


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
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.normal_(fc.weight, std=0.001)
            nn.init.zeros_(fc.bias)

    def project(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = split_heads(self.fc_q(queries), self.h, self.d_k)  # (B, h, Nq, d_k)
        k = split_heads(self.fc_k(keys), self.h, self.d_k)  # (B, h, Nk, d_k)
        v = split_heads(self.fc_v(values), self.h, self.d_v)  # (B, h, Nk, d_v)
        return q, k, v
