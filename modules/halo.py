"""HaloNet: Halo Attention.

Vaswani et al., CVPR 2021, https://arxiv.org/abs/2103.12731

Blocked local self-attention: the map is cut into ``block_size`` x ``block_size`` query
blocks; each block attends to its (block + 2 * halo)^2 neighbourhood (zero outside the
map), with 2-D relative position logits (separate height and width embeddings).
Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``HaloAttention.py`` (``RelPosEmb``, ``HaloAttention``).

Kept from the reference on purpose: its padding mask is inverted. ``masked_fill`` is
applied where the unfolded all-ones map is 1, i.e. to the keys *inside* the image, and
the padded keys are kept. So a block whose neighbourhood reaches over the border attends
only to padding (whose keys and values are 0), and an interior block has every logit set
to the same value and averages its neighbourhood values uniformly. The golden vectors
(and any weights trained with the reference) follow this behaviour, so this module
reproduces it exactly: same logits (q.k + relative terms), same fill value, same softmax.
Set ``mask_padding = True`` (class or instance attribute) for the paper's intent: mask
the padding instead.

Differences from the reference, all numerically neutral:
- ``to_q``/``to_kv`` have no bias and zero padding maps to zero, so keys and values are
  projected per pixel (one matmul together with q) and then cut into halo windows, instead
  of projecting every unfolded window pixel ((block + 2 * halo)^2 / block^2 times the work).
- ``F.unfold`` (Im2Col) is replaced by block-aligned slicing: the padded map is viewed as
  blocks and each window is ``ceil(window / block)``^2 neighbouring blocks.
- Relative logits: instead of rel_to_abs pad/reshape tricks on expanded tensors, q is
  multiplied once by the stacked height/width tables and the needed entry
  (``table[key - query + window - 1]``) is picked with a constant 0/1 selector.
- einsum/einops are replaced by matmul/reshape/permute; the mask is a constant.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_module

class RelPosEmb(nn.Module):
    def __init__(self, block_size: int, rel_size: int, dim_head: int) -> None:
        super().__init__()
        height = width = rel_size
        scale = dim_head**-0.5
        self.block_size = block_size
        self.rel_height = nn.Parameter(torch.randn(height * 2 - 1, dim_head) * scale)
        self.rel_width = nn.Parameter(torch.randn(width * 2 - 1, dim_head) * scale)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (n, b, b, d) block queries -> (n, b, b, K, K) logits for a K x K window.

        Query (x, y) and key (i, j) get q . rel_height[i - x + K - 1] + q . rel_width[j - y + K - 1].
        """
        b = q.shape[-2]
        R = self.rel_height.shape[0]  # 2K - 1
        K = (R + 1) // 2
        g = q @ torch.cat([self.rel_height, self.rel_width], dim=0).t()  # (..., b, b, 2R)
        g = g.unsqueeze(-1)  # (..., b, b, 2R, 1)
        # sel[x, r, i] = 1 where r == i - x + K - 1 (same table for the width axis with y)
        pos = torch.arange(b, device=q.device).reshape(b, 1, 1)
        r = torch.arange(R, device=q.device).reshape(1, R, 1)
        k = torch.arange(K, device=q.device).reshape(1, 1, K)
        sel = (r == k - pos + K - 1).to(q.dtype)  # (b, R, K)
        logit_h = (g[..., :R, :] * sel.unsqueeze(1)).sum(dim=-2)  # (..., b, b, K): depends on (x, i)
        logit_w = (g[..., R:, :] * sel).sum(dim=-2)  # (..., b, b, K): depends on (y, j)
        return logit_h.unsqueeze(-1) + logit_w.unsqueeze(-2)  # (..., b, b, K, K)


@register_module(
    "halo",
    kwargs=dict(dim=512, block_size=2, halo_size=1),
    shapes=[(1, 512, 8, 8)],
    paper="Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
    url="https://arxiv.org/abs/2103.12731",
)
class HaloAttention(nn.Module):
    # False reproduces the reference (and the golden output); True masks the padding instead.
    mask_padding: bool = False

    def __init__(self, *, dim: int, block_size: int, halo_size: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        assert halo_size > 0, "halo size must be greater than 0"
        self.dim = dim
        self.heads = heads
        self.scale = dim_head**-0.5
        self.block_size = block_size
        self.halo_size = halo_size
        inner_dim = dim_head * heads
        self.rel_pos_emb = RelPosEmb(block_size=block_size, rel_size=block_size + (halo_size * 2), dim_head=dim_head)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        b, halo, nh = self.block_size, self.halo_size, self.heads
        assert H % b == 0 and W % b == 0, "fmap dimensions must be divisible by the block size"
        assert C == self.dim, f"channels for input ({C}) does not equal to the correct dimension ({self.dim})"
        K = b + 2 * halo
        nbh, nbw = H // b, W // b
        d = self.to_q.weight.shape[0] // nh

        # q, k, v for every pixel in one matmul, then split into heads
        w = torch.cat([self.to_q.weight * self.scale, self.to_kv.weight], dim=0)  # (3 * inner, C)
        qkv = x.flatten(2).transpose(1, 2) @ w.t()  # (B, HW, 3 * inner)
        qkv = qkv.reshape(B, H, W, 3, nh, d)
        q = qkv[:, :, :, 0].reshape(B, nbh, b, nbw, b, nh, d).permute(0, 5, 1, 3, 2, 4, 6)  # (B, nh, nbh, nbw, b, b, d)
        kv = qkv[:, :, :, 1:].permute(0, 3, 4, 1, 2, 5).reshape(B * 2 * nh, H, W, d)

        # halo windows: pad by `halo` (plus up to a block multiple), view as blocks and take the
        # T x T neighbouring blocks of every block; window row = t * b + offset, first K kept
        T = math.ceil(K / b)
        Hp, Wp = (nbh + T - 1) * b, (nbw + T - 1) * b
        kv = F.pad(kv, (0, 0, halo, Wp - W - halo, halo, Hp - H - halo))  # (B*2*nh, Hp, Wp, d)
        kv = kv.reshape(B * 2 * nh, nbh + T - 1, b, nbw + T - 1, b, d)
        kv = torch.stack([kv[:, ti : ti + nbh, :, tj : tj + nbw] for ti in range(T) for tj in range(T)], dim=1)
        kv = kv.reshape(B * 2 * nh, T, T, nbh, b, nbw, b, d).permute(0, 3, 5, 1, 4, 2, 6, 7)
        kv = kv.reshape(B * 2 * nh, nbh, nbw, T * b, T * b, d)
        if T * b != K:
            kv = kv[:, :, :, :K, :K]
        kv = kv.reshape(B, 2, nh, nbh, nbw, K * K, d)
        k, v = kv[:, 0], kv[:, 1]  # (B, nh, nbh, nbw, K*K, d)

        # logits: q.k plus relative position terms (q already carries the scale, as in the reference)
        sim = q.reshape(B, nh, nbh, nbw, b * b, d) @ k.transpose(-2, -1)  # (B, nh, nbh, nbw, b*b, K*K)
        sim = sim + self.rel_pos_emb(q.reshape(-1, b, b, d)).reshape(B, nh, nbh, nbw, b * b, K * K)

        # window pixels inside the image (constant); the reference fills those (see module doc)
        ar = torch.arange(K, device=x.device)
        rows = torch.arange(nbh, device=x.device).unsqueeze(1) * b + ar - halo  # (nbh, K)
        cols = torch.arange(nbw, device=x.device).unsqueeze(1) * b + ar - halo  # (nbw, K)
        inside = ((rows >= 0) & (rows < H)).reshape(nbh, 1, K, 1) & ((cols >= 0) & (cols < W)).reshape(1, nbw, 1, K)
        fill = ~inside if self.mask_padding else inside
        sim = sim.masked_fill(fill.reshape(nbh, nbw, 1, K * K), -torch.finfo(sim.dtype).max)

        out = sim.softmax(dim=-1) @ v  # (B, nh, nbh, nbw, b*b, d)
        # merge heads and blocks: (B, nh, nbh, nbw, b, b, d) -> (B, nbh, b, nbw, b, nh, d) = (B, H, W, inner)
        out = out.reshape(B, nh, nbh, nbw, b, b, d).permute(0, 2, 4, 3, 5, 1, 6).reshape(B, H, W, nh * d)
        return self.to_out(out).permute(0, 3, 1, 2)  # (B, C, H, W)
