"""EMSA: efficient multi-head self-attention of ResT.

Zhang and Yang, "ResT: An Efficient Transformer for Visual Recognition",
https://arxiv.org/abs/2105.13677

Keys and values come from a spatially reduced copy of the queries (a strided depth-wise
conv + LayerNorm, when ``ratio > 1``), and the attention map is mixed across heads by a
1x1 conv, then softmax and InstanceNorm ("transform"). Same class name, keywords, forward
signature and ``state_dict`` keys as External-Attention-pytorch's ``EMSA.py``, including its
behaviour that with ``ratio > 1`` the keys/values are taken from ``queries`` (which must be
an ``H x W`` token grid) and the ``keys``/``values`` arguments are ignored.

Differences, for export: ``reshape``/``transpose`` instead of ``view`` on permuted tensors,
a Python-float scale, and no empty ``nn.Sequential`` (it held no parameters). With
``ratio > 1`` the exported graph has only the ``queries`` input, since nothing reads the
others; the manifest lists them as unused.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import Heads, MultiHeadAttention, init_small_linear, merge_heads
from ._registry import register_module


@register_module(
    "emsa",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8, H=8, W=8, ratio=2, apply_transform=True),
    shapes=[(1, 64, 512), (1, 64, 512), (1, 64, 512)],
    paper="ResT: An Efficient Transformer for Visual Recognition",
    url="https://arxiv.org/abs/2105.13677",
    fixed_because="with ratio > 1 the queries are reshaped to the constructor's H x W map",
)
class EMSA(MultiHeadAttention):
    def __init__(
        self,
        d_model: int,
        d_k: int,
        d_v: int,
        h: int,
        dropout: float = 0.1,
        H: int = 7,
        W: int = 7,
        ratio: int = 3,
        apply_transform: bool = True,
    ) -> None:
        super().__init__(d_model, d_k, d_v, h, dropout)
        self.H = H
        self.W = W

        self.ratio = ratio
        if ratio > 1:
            self.sr_conv = nn.Conv2d(
                d_model,
                d_model,
                kernel_size=ratio + 1,
                stride=ratio,
                padding=ratio // 2,
                groups=d_model,
            )
            self.sr_ln = nn.LayerNorm(d_model)

        self.apply_transform = apply_transform and h > 1
        if self.apply_transform:
            self.transform = nn.Sequential()
            self.transform.add_module("conv", nn.Conv2d(h, h, kernel_size=1, stride=1))
            self.transform.add_module("softmax", nn.Softmax(-1))
            self.transform.add_module("in", nn.InstanceNorm2d(h))

        self._init_weights()

    def _init_weights(self) -> None:
        # Same initialisation as the reference.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_small_linear(m)

    def heads(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> Heads:
        if self.ratio > 1:  # keys and values from the spatially reduced queries
            b, nq, c = queries.shape
            x = queries.transpose(1, 2).reshape(b, c, self.H, self.W)  # (B, Nq, C) -> (B, C, H, W)
            x = self.sr_conv(x)  # (B, C, H', W')
            keys = values = self.sr_ln(x.flatten(2).transpose(1, 2))  # (B, N', C)
        return super().heads(queries, keys, values)  # (B, h, N, d)

    def mix(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attention_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        # As in the reference, the weights and the mask apply after the softmax.
        k = k.transpose(-1, -2)  # (B, h, d_k, N')
        att = torch.matmul(q, k) * self.scale  # (B, h, Nq, N')
        # transform: mix heads (1x1 conv), softmax, InstanceNorm
        att = self.transform(att) if self.apply_transform else torch.softmax(att, dim=-1)
        if attention_weights is not None:
            att = att * attention_weights
        if attention_mask is not None:
            att = att.masked_fill(attention_mask, float("-inf"))
        att = self.dropout(att)
        return merge_heads(torch.matmul(att, v))  # (B, Nq, h*d_v)
