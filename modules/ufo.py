"""UFO attention: softmax-free linear attention with cross-normalisation (XNorm).

Song, "UFO-ViT: High Performance Linear Vision Transformer without Softmax",
https://arxiv.org/abs/2109.14382

``K^T V`` is formed first (cost linear in the token count), then both it and ``Q`` are
L2-normalised along their last axis and scaled by a learnable per-head ``gamma`` (XNorm)
before the product. Same class name, keywords, forward signature and ``state_dict`` keys
as External-Attention-pytorch's ``UFOAttention.py``. No epsilon is added, as in the reference.

Differences, for export and ONNX Runtime speed (same maths, reassociated):
- ``(K^T V)^T = V^T K`` is formed per head as a 3-D batched matmul of the (B*h, N, d) head
  views, so the transpose is the matmul's own (ORT fuses it into FusedMatMul) instead of a
  (B, N, h, d) -> (B, h, d, N) copy; the final product reads it transposed the same way.
- XNorm of ``K^T V`` scales its rows by ``gamma / ||row||``; that diagonal is moved onto the
  columns of ``Q`` (``Q diag(s) KV``), so the large (B, h, d_k, d_v) tensor is only read for
  its norms, never rescaled. Norms are ``sqrt(sum(x*x))`` (Mul + ReduceSum: ORT's ReduceL2
  is several times slower on this tensor); the row sums of ``(V^T K)`` squares run over
  axis -2, ORT's fast strided reduction.
- ``Q``'s norm is taken in the token-major (B, N, h, d_k) layout, before the head transpose.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module


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
        h, d_k, d_v = self.h, self.d_k, self.d_v
        k = self.fc_k(keys).reshape(b, nk, h, d_k).transpose(1, 2).reshape(b * h, nk, d_k)  # (B*h, Nk, d_k)
        v = self.fc_v(values).reshape(b, nk, h, d_v).transpose(1, 2).reshape(b * h, nk, d_v)  # (B*h, Nk, d_v)
        kv_t = torch.matmul(v.transpose(1, 2), k).reshape(b, h, d_v, d_k)  # (K^T V)^T: (B, h, d_v, d_k)
        kv_norm = (kv_t * kv_t).sum(2, keepdim=True).sqrt()  # row norms of K^T V: (B, h, 1, d_k)

        q = self.fc_q(queries).reshape(b, nq, h, d_k)  # (B, Nq, h, d_k)
        q = q / (q * q).sum(3, keepdim=True).sqrt()  # unit rows, token-major
        # XNorm(Q) XNorm(KV) = (Q_unit * gamma^2 / ||KV rows||) KV
        q = q.transpose(1, 2) * (self.gamma * self.gamma / kv_norm)  # (B, h, Nq, d_k)
        out = torch.matmul(q, kv_t.transpose(2, 3))  # (B, h, Nq, d_v)
        out = out.transpose(1, 2).reshape(b, nq, h * d_v)  # (B, Nq, h*d_v)
        return self.fc_o(out)  # (B, Nq, d_model)
