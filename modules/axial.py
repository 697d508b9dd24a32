"""Axial Attention in Multidimensional Transformers.

Ho et al., 2019, https://arxiv.org/abs/1912.12180

Multi-head self-attention along one spatial axis at a time (every other axis is treated
as batch), one attention per axis; their outputs are summed (``sum_axial_out=True``) or
the attentions are applied one after another.

Same class names, keywords and ``state_dict`` keys (``axial_attentions.<i>.fn.to_q`` ...)
as External-Attention-pytorch's ``Axial_attention.py`` (itself from lucidrains'
axial-attention); the helper classes ``PermuteToFrom`` and ``SelfAttention`` are kept, the
reversible-network and image-transformer helpers (unused by ``AxialAttention``) are not.
Differences, all in how the same math is written:

- ``einsum('bie,bje->bij')`` / ``einsum('bij,bje->bie')`` are plain matmuls and the
  ``e ** -0.5`` scale is folded into the query projection.
- ``AxialAttention.forward`` moves the embedding dim last once, computes the q/k/v
  projections as one matmul, and for each axis brings the heads and that axis next to
  the head dim with one transpose (no ``permute -> contiguous -> reshape`` round trip per
  axis). With ``sum_axial_out`` the projections of all axes run as one matmul, and the
  output projections as one matmul over the concatenated head outputs (their weights are
  concatenated in the forward; constant-folded on export).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._layers import module_as, modules_as
from ._registry import register_module


def calculate_permutations(num_dimensions: int, emb_dim: int) -> list[list[int]]:
    """Per axial dim, the permutation that moves (rest..., axial dim, embedding dim) last."""
    total = num_dimensions + 2
    emb_dim = emb_dim if emb_dim > 0 else emb_dim + total
    axial_dims = [i for i in range(1, total) if i != emb_dim]
    perms = []
    for axial_dim in axial_dims:
        rest = [i for i in range(total) if i not in (axial_dim, emb_dim)]
        perms.append([*rest, axial_dim, emb_dim])
    return perms


def _inverse(perm: Sequence[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_heads: int | None = None) -> None:
        super().__init__()
        self.dim_heads = (dim // heads) if dim_heads is None else dim_heads
        dim_hidden = self.dim_heads * heads
        self.heads = heads
        self.to_q = nn.Linear(dim, dim_hidden, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_hidden, bias=False)
        self.to_out = nn.Linear(dim_hidden, dim)

    def qkv_weight(self) -> torch.Tensor:
        """(3 * hidden, dim): q rows pre-scaled by dim_heads ** -0.5, then k, then v."""
        return torch.cat([self.to_q.weight * self.dim_heads**-0.5, self.to_kv.weight], 0)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, T, dim) -> (N, T, dim); kv (N, T', dim) defaults to x."""
        kv = x if kv is None else kv
        n, t, _ = x.shape
        h, e = self.heads, self.dim_heads
        q = self.to_q(x) * e**-0.5
        k, v = self.to_kv(kv).chunk(2, dim=-1)
        q = q.reshape(n, t, h, e).transpose(1, 2)  # (N, T, h*e) -> (N, h, T, e)
        k = k.reshape(n, -1, h, e).transpose(1, 2)  # (N, h, T', e)
        v = v.reshape(n, -1, h, e).transpose(1, 2)  # (N, h, T', e)
        att = torch.softmax(torch.matmul(q, k.transpose(2, 3)), dim=-1)  # (N, h, T, T')
        out = torch.matmul(att, v)  # (N, h, T, e)
        out = out.transpose(1, 2).reshape(n, t, h * e)  # -> (N, T, h*e)
        return self.to_out(out)

    def attend_along(self, qkv: torch.Tensor, axis: int) -> torch.Tensor:
        """Attention along one axis of a channel-last projection.

        qkv: (B, s_1, ..., s_n, 3 * hidden) from ``qkv_weight``; axis in 1..n.
        Returns the head outputs before ``to_out``: (B, s_1, ..., s_n, hidden).
        """
        shape = qkv.shape[:-1]
        r = len(shape)  # n + 1
        h, e = self.heads, self.dim_heads
        t = qkv.reshape(*shape, 3 * h, e)  # (B, s..., 3h, e)
        # (B, s..., 3h, e) -> (B, rest..., 3h, s_axis, e)
        perm = [i for i in range(r) if i != axis] + [r, axis, r + 1]
        q, k, v = t.permute(*perm).split(h, dim=r - 1)
        att = torch.matmul(q, k.transpose(-1, -2))  # (B, rest..., h, s_a, s_a)
        att = torch.softmax(att, dim=-1)
        out = torch.matmul(att, v)  # (B, rest..., h, s_a, e)
        out = out.permute(*_inverse(perm))  # -> (B, s..., h, e)
        return out.reshape(*shape, h * e)


class PermuteToFrom(nn.Module):
    """Runs ``fn`` on (N, T, dim) sequences along one axis, then restores the layout."""

    def __init__(self, permutation: Sequence[int], fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.permutation = list(permutation)
        self.inv_permutation = _inverse(permutation)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        axial = x.permute(*self.permutation)  # (..., T, dim)
        shape = axial.shape
        out = self.fn(axial.reshape(-1, shape[-2], shape[-1]), **kwargs)  # (N, T, dim)
        return out.reshape(shape).permute(*self.inv_permutation)


@register_module(
    "axial",
    kwargs=dict(dim=128, num_dimensions=2, heads=8, dim_index=1),
    shapes=[(1, 128, 7, 7)],
    paper="Axial Attention in Multidimensional Transformers",
    url="https://arxiv.org/abs/1912.12180",
    dynamic=("batch", "height", "width"),
)
class AxialAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_dimensions: int = 2,
        heads: int = 8,
        dim_heads: int | None = None,
        dim_index: int = -1,
        sum_axial_out: bool = True,
    ) -> None:
        assert dim % heads == 0, "hidden dimension must be divisible by number of heads"
        super().__init__()
        self.dim = dim
        self.total_dimensions = num_dimensions + 2
        self.dim_index = dim_index if dim_index > 0 else dim_index + self.total_dimensions
        self.axial_attentions = nn.ModuleList(
            PermuteToFrom(p, SelfAttention(dim, heads, dim_heads))
            for p in calculate_permutations(num_dimensions, dim_index)
        )
        self.sum_axial_out = sum_axial_out
        # Axis (in the channel-last layout (B, s_1, ..., s_n, dim)) each attention runs along.
        axial_dims = [p[-2] for p in calculate_permutations(num_dimensions, dim_index)]
        self._axes: tuple[int, ...] = tuple(d if d < self.dim_index else d - 1 for d in axial_dims)
        # Explicit permutations to and from that layout (torch.movedim exports negative perms).
        total = self.total_dimensions
        self._to_last = [i for i in range(total) if i != self.dim_index] + [self.dim_index]
        self._from_last = _inverse(self._to_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == self.total_dimensions, "input does not have the right number of dims"
        assert x.shape[self.dim_index] == self.dim, "input does not have the right embedding size"
        xcl = x.permute(*self._to_last)  # (B, ..., dim, ...) -> (B, s_1, ..., s_n, dim)
        fns = [
            module_as(m.fn, SelfAttention) for m in modules_as(self.axial_attentions, PermuteToFrom)
        ]
        if self.sum_axial_out:
            # Every axis reads the same input: one projection for all, one output projection.
            w_qkv = torch.cat([fn.qkv_weight() for fn in fns], 0)
            qkv = F.linear(xcl, w_qkv)  # (B, s..., axes * 3 * hidden)
            chunks = qkv.split([3 * fn.heads * fn.dim_heads for fn in fns], dim=-1)
            heads_out = [fn.attend_along(c, a) for fn, c, a in zip(fns, chunks, self._axes)]
            # sum_i (o_i @ W_i^T + b_i) = [o_1, o_2, ...] @ [W_1, W_2, ...]^T + sum_i b_i
            w_out = torch.cat([fn.to_out.weight for fn in fns], 1)
            b_out = torch.stack([fn.to_out.bias for fn in fns]).sum(0)
            out = F.linear(torch.cat(heads_out, -1), w_out, b_out)  # (B, s..., dim)
        else:
            out = xcl
            for fn, a in zip(fns, self._axes):
                out = fn.to_out(fn.attend_along(F.linear(out, fn.qkv_weight()), a))
        return out.permute(*self._from_last)
