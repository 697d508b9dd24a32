"""MOA: multi-resolution overlapped attention (MOA-Transformer's global attention).

Patel et al., "Aggregating Global Features into Local Vision Transformer", ICPR 2022,
https://arxiv.org/abs/2201.12903

The (H, W) token map is reduced to ``dim / 32`` channels by a 1x1 conv. Each
``ws x ws`` window becomes one query vector (its reduced pixels, flattened); each
overlapping ``(ws+2) x (ws+2)`` patch around a window (stride ``ws``, zero padding 1)
becomes one key/value vector. Multi-head attention runs between windows, with a relative
position bias over the window grid. Output: one vector per window, ``(B, (H/ws)*(W/ws), C)``.
Class name, keywords and ``state_dict`` keys as External-Attention-pytorch's
``MOATransformer.py`` (``GlobalAttention``).

Differences from the reference (see ``tests/zoo/golden/index.json``, note for ``moa``), which
scrambles its layouts: it reads the (B, H*W, C) tokens with ``reshape(-1, C, H, W)``
instead of a transpose, turns the query patches (``b (p1 p2 c) h w``) and the key patches
(``nn.Unfold``'s ``b (c k k) L``) into tokens with ``.view`` instead of a transpose, and
hard-codes the key stride to 14. This module follows the paper, as the golden output does:
``forward(x)`` with (H, W) = ``input_resolution``; query features in (p1, p2, c) order, key
features in (c, kh, kw) order, key stride ``ws``.
For export and speed (numerically neutral): the 1x1 conv runs as a matmul on the
channels-last tokens, so query windows are one reshape/transpose away; the overlapping key
patches are one ``Gather`` with a constant index from the zero-padded reduced map (no
``Im2Col``); the attention scale is folded into the q projection (a constant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ._registry import register_module


def relative_position_index(n: int) -> torch.Tensor:
    """(n*n, n*n) int64: row of the (2n-1)^2 bias table for each pair of n x n grid cells."""
    coords = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")).flatten(
        1
    )  # (2, n*n)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + n - 1) * (2 * n - 1) + (rel[1] + n - 1)


def overlapping_patch_index(h: int, w: int, ws: int, k: int) -> torch.Tensor:
    """(windows, k*k) pixel indices into the (h+2, w+2) padded map: the k x k patch whose
    top-left is the window's top-left in padded coordinates (stride ws)."""
    rows = (torch.arange(h // ws) * ws).reshape(-1, 1, 1, 1) + torch.arange(k).reshape(1, 1, k, 1)
    cols = (torch.arange(w // ws) * ws).reshape(1, -1, 1, 1) + torch.arange(k).reshape(1, 1, 1, k)
    return (rows * (w + 2) + cols).reshape((h // ws) * (w // ws), k * k)


@register_module(
    "moa",
    kwargs=dict(dim=96, window_size=[14, 14], input_resolution=[56, 56], num_heads=3),
    shapes=[(1, 3136, 96)],
    paper="Aggregating Global Features into Local Vision Transformer",
    url="https://arxiv.org/abs/2201.12903",
    fixed_because="input_resolution fixes the window grid and the relative position table",
)
class GlobalAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        window_size: Sequence[int],
        input_resolution: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        h, w = input_resolution
        self.dim = dim
        self.window_size = window_size
        self.input_resolution = (h, w)
        self.query_size = window_size[0]
        self.key_size = self.query_size + 2
        self.reduction = 32
        if h != w or h % self.query_size:
            raise UsageError(
                f"moa: input_resolution must be square and divisible by window_size, not {h}x{w}"
            )
        if dim < self.reduction or dim % num_heads:
            raise UsageError(f"moa: dim must be >= 32 and divisible by num_heads, not {dim}")
        self.seq_len = h // self.query_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.pre_conv = nn.Conv2d(dim, dim // self.reduction, 1)

        s = self.seq_len
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * s - 1) * (2 * s - 1), num_heads)
        )
        self.relative_position_index: torch.Tensor
        self.register_buffer("relative_position_index", relative_position_index(s))

        c = dim // self.reduction
        self.query_dim = c * self.query_size * self.query_size
        self.key_dim = c * self.key_size * self.key_size
        self.q = nn.Linear(self.query_dim, self.dim, bias=qkv_bias)
        self.kv = nn.Linear(self.key_dim, 2 * self.dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.input_resolution
        B, L, C = x.shape
        if not torch.jit.is_tracing() and L != H * W:
            raise UsageError(f"moa: {L} tokens given, input_resolution {H}x{W} needs {H * W}")
        p, k, s, nh = self.query_size, self.key_size, self.seq_len, self.num_heads
        n, d = s * s, C // nh

        reduced = F.linear(x, self.pre_conv.weight.flatten(1), self.pre_conv.bias)  # (B, H*W, c)
        c = reduced.shape[-1]
        # one query per window, features (p1, p2, c)
        windows = reduced.reshape(B, s, p, s, p, c).transpose(2, 3).reshape(B, n, p * p * c)
        q = F.linear(
            windows,
            self.q.weight * self.scale,
            None if self.q.bias is None else self.q.bias * self.scale,
        )
        q = q.reshape(B, n, nh, d).transpose(1, 2)  # (B, nh, n, d)

        # one key/value per overlapping (p+2)^2 patch, features (c, kh, kw)
        padded = F.pad(reduced.transpose(1, 2).reshape(B, c, H, W), (1, 1, 1, 1)).flatten(
            2
        )  # (B, c, (H+2)*(W+2))
        index = overlapping_patch_index(H, W, p, k).to(x.device)
        patches = (
            padded[:, :, index.reshape(-1)]
            .reshape(B, c, n, k * k)
            .transpose(1, 2)
            .reshape(B, n, c * k * k)
        )
        kv = self.kv(patches).reshape(B, n, 2, nh, d).permute(2, 0, 3, 1, 4)  # (2, B, nh, n, d)

        bias = self.relative_position_bias_table[
            self.relative_position_index.reshape(-1)
        ]  # (n*n, nh)
        attn = q @ kv[0].transpose(-2, -1) + bias.reshape(n, n, nh).permute(
            2, 0, 1
        )  # (B, nh, n, n)
        out = self.attn_drop(attn.softmax(dim=-1)) @ kv[1]  # (B, nh, n, d)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, n, C)))  # (B, n, C)
