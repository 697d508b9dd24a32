"""UFO attention: softmax-free linear attention with cross-normalisation (XNorm).

Song, "UFO-ViT: High Performance Linear Vision Transformer without Softmax",
https://arxiv.org/abs/2109.14382

``K^T V`` is formed first (cost linear in the token count), then both it and ``Q`` are
L2-normalised along their last axis and scaled by a learnable per-head ``gamma`` (XNorm)
before the product. Same class name, keywords, forward signature and ``state_dict`` keys
as External-Attention-pytorch's ``UFOAttention.py``. No epsilon is added, as in the reference.

Differences, for export and ONNX Runtime speed (same maths, reassociated):
- The projections run token-first on (N, B, C) (a free transpose of the small inputs), so the
  (B, h, N, d) head views and ``V^T`` are permutes that only move the leading axis; ONNX
  Runtime folds them into its batched matmul (FusedMatMul transA/transBatch) rather than
  copying, and the final product reads ``(K^T V)^T`` transposed the same way.
- XNorm of ``K^T V`` scales its rows by ``gamma / ||row||``; that diagonal is moved onto the
  columns of ``Q`` (``Q diag(s) KV``), so the large (B, h, d_k, d_v) tensor is only read for
  its norms, never rescaled. Norms are ``sqrt(sum(x*x))`` (Mul + ReduceSum: ORT's ReduceL2
  is several times slower on this tensor); the row sums of ``(V^T K)`` squares run over
  axis -2, ORT's fast strided reduction.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import QKVOProjections
from ._registry import register_module


@register_module(
    "ufo",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="UFO-ViT: High Performance Linear Vision Transformer without Softmax",
    url="https://arxiv.org/abs/2109.14382",
    dynamic=("batch", "tokens"),
)
class UFOAttention(QKVOProjections):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__(
            d_model, d_k, d_v, h, dropout
        )  # dropout is unused in forward, as in the reference
        self.gamma = nn.Parameter(torch.randn((1, h, 1, 1)))

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        b, nq = queries.shape[:2]
        nk = keys.shape[1]
        h, d_k, d_v = self.h, self.d_k, self.d_v
        # Projections run token-first, (N, B, C): the per-head views (B, h, N, d) are then
        # transposes of the leading axis, which ORT folds into the batched matmuls
        # (FusedMatMul transBatch) instead of copying.
        k = self.fc_k(keys.transpose(0, 1)).reshape(nk, b, h, d_k)  # (Nk, B, h, d_k)
        v = self.fc_v(values.transpose(0, 1)).reshape(nk, b, h, d_v)  # (Nk, B, h, d_v)
        kv_t = torch.matmul(
            v.permute(1, 2, 3, 0), k.permute(1, 2, 0, 3)
        )  # (K^T V)^T: (B, h, d_v, d_k)
        kv_norm = (kv_t * kv_t).sum(2, keepdim=True).sqrt()  # row norms of K^T V: (B, h, 1, d_k)

        q = self.fc_q(queries.transpose(0, 1)).reshape(nq, b, h, d_k)  # (Nq, B, h, d_k)
        q = q / (q * q).sum(3, keepdim=True).sqrt()  # unit rows
        # XNorm(Q) XNorm(KV) = (Q_unit * gamma^2 / ||KV rows||) KV
        q = q * (self.gamma * self.gamma / kv_norm).reshape(1, b, h, d_k)
        out = torch.matmul(q.permute(1, 2, 0, 3), kv_t.transpose(2, 3))  # (B, h, Nq, d_v)
        out = out.transpose(1, 2).reshape(b, nq, h * d_v)  # (B, Nq, h*d_v)
        return self.fc_o(out)  # (B, Nq, d_model)
