"""External Attention: attention against two small learnable memories.

Guo et al., "Beyond Self-attention: External Attention using Two Linear Layers for Visual
Tasks", https://arxiv.org/abs/2105.02358

The tokens attend to an external key memory ``mk`` (S slots), the map is double-normalised
(softmax over the tokens, then an L1 normalisation over the slots), and the value memory
``mv`` maps it back to ``d_model``. Same class name, keywords and ``state_dict`` keys as
External-Attention-pytorch's ``ExternalAttention.py``; the forward was already
export-friendly, it is only written out as plain reductions (``Softmax`` / ``ReduceSum``).
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import init_small_linear
from ._registry import register_module


@register_module(
    "external",
    kwargs=dict(d_model=512, S=8),
    shapes=[(1, 49, 512)],
    paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks",
    url="https://arxiv.org/abs/2105.02358",
    dynamic=("batch", "tokens"),
)
class ExternalAttention(nn.Module):
    def __init__(self, d_model: int, S: int = 64) -> None:
        super().__init__()
        self.mk = nn.Linear(d_model, S, bias=False)
        self.mv = nn.Linear(S, d_model, bias=False)
        self.softmax = nn.Softmax(dim=1)
        init_small_linear(self.mk, self.mv)  # as the reference

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        attn = self.softmax(self.mk(queries))  # (B, N, C) -> (B, N, S), normalised over N
        attn = attn / attn.sum(dim=2, keepdim=True)  # L1 over the S slots
        return self.mv(attn)  # (B, N, S) -> (B, N, C)
