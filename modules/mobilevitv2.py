"""MobileViTv2 separable self-attention.

Mehta and Rastegari, "Separable Self-attention for Mobile Vision Transformers",
https://arxiv.org/abs/2206.02680

A linear layer scores each token (``fc_i``), the softmax of the scores over the tokens
weights the keys into one context vector, which gates the values. Cost linear in the
token count. Same class name, keywords and ``state_dict`` keys as External-Attention-
pytorch's ``MobileViTv2Attention.py``, and the same math (like the reference, no ReLU on
the values). Difference, for speed: the weighted sum over tokens is one batched matmul
``softmax(i)^T @ K`` instead of a broadcast multiply and a reduction.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import init_small_linear
from ._registry import register_module


@register_module(
    "mobilevitv2",
    kwargs=dict(d_model=512),
    shapes=[(1, 49, 512)],
    paper="Separable Self-attention for Mobile Vision Transformers",
    url="https://arxiv.org/abs/2206.02680",
    dynamic=("batch", "tokens"),
)
class MobileViTv2Attention(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc_i = nn.Linear(d_model, 1)
        self.fc_k = nn.Linear(d_model, d_model)
        self.fc_v = nn.Linear(d_model, d_model)
        self.fc_o = nn.Linear(d_model, d_model)
        self.d_model = d_model
        init_small_linear(self.fc_i, self.fc_k, self.fc_v, self.fc_o)  # as the reference

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight_i = torch.softmax(self.fc_i(input), dim=1)  # (B, N, 1), softmax over the tokens
        context = torch.matmul(
            weight_i.transpose(1, 2), self.fc_k(input)
        )  # (B, 1, N) @ (B, N, d) -> (B, 1, d)
        return self.fc_o(self.fc_v(input) * context)  # (B, N, d)
