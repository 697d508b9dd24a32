"""UFO attention: softmax-free linear attention with cross-normalisation (XNorm).

Song, "UFO-ViT: High Performance Linear Vision Transformer without Softmax",
https://arxiv.org/abs/2109.14382

``K^T V`` is formed first (cost linear in the token count), then both it and ``Q`` are
L2-normalised along their last axis and scaled by a learnable per-head ``gamma`` (XNorm)
before the product. Same class name, keywords, forward signature and ``state_dict`` keys
as External-Attention-pytorch's ``UFOAttention.py``. Differences, for export: head
split/merge by ``reshape``/``transpose``; the norm is a ``ReduceL2`` and gamma/norm is
formed on the small (..., 1) tensor before the broadcast multiply. No epsilon is added,
as in the reference.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


def _xnorm(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """x * gamma / ||x||_2 over the last axis."""
    return x * (gamma / torch.linalg.vector_norm(x, ord=2, dim=-1, keepdim=True))


@register_module(
    "ufo",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="UFO-ViT: High Performance Linear Vision Transformer without Softmax",
    url="https://arxiv.org/abs/2109.14382",
)
class UFOAttention(nn.Module):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc_q = nn.Linear(d_model, h * d_k)
        self.fc_k = nn.Linear(d_model, h * d_k)
        self.fc_v = nn.Linear(d_model, h * d_v)
        self.fc_o = nn.Linear(h * d_v, d_model)
        self.dropout = nn.Dropout(dropout)  # unused in forward, kept like the reference
        self.gamma = nn.Parameter(torch.randn((1, h, 1, 1)))

        self.d_model = d_model
        self.d_k = d_k
        self.d_v = d_v
        self.h = h
        # Same initialisation as the reference.
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.normal_(fc.weight, std=0.001)
            nn.init.zeros_(fc.bias)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, nq = queries.shape[:2]
        nk = keys.shape[1]
        q = self.fc_q(queries).reshape(b, nq, self.h, self.d_k).transpose(1, 2)  # (B, h, Nq, d_k)
        k = self.fc_k(keys).reshape(b, nk, self.h, self.d_k).permute(0, 2, 3, 1)  # (B, h, d_k, Nk)
        v = self.fc_v(values).reshape(b, nk, self.h, self.d_v).transpose(1, 2)  # (B, h, Nk, d_v)

        kv = torch.matmul(k, v)  # (B, h, d_k, d_v)
        out = torch.matmul(_xnorm(q, self.gamma), _xnorm(kv, self.gamma))  # (B, h, Nq, d_v)
        out = out.transpose(1, 2).reshape(b, nq, self.h * self.d_v)  # (B, Nq, h*d_v)
        return self.fc_o(out)  # (B, Nq, d_model)
