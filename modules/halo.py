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
only to padding (whose keys and values are 0) and outputs ``to_out.bias``, and an
interior block gets equal logits everywhere and averages its neighbourhood values; q and
the relative embeddings cannot change the output. The golden vectors (and any weights
trained with the reference) follow this behaviour, so this module computes the same
logits (q.k + relative terms), applies the same mask and softmax, and matches exactly.
Set ``mask_padding = True`` (class or instance attribute) for the paper's intent: mask
the padding instead (checked against the reference with the mask negated).

Differences from the reference, all numerically neutral:
- ``to_q``/``to_kv`` have no bias and zero padding maps to zero, so q, k, v are projected
  per pixel and then cut into blocks / halo windows, instead of projecting every unfolded
  window pixel ((block + 2 * halo)^2 / block^2 times the work for k and v).
- ``F.unfold`` (Im2Col) and the einops block rearranges are row ``Gather``s with constant
  indices on the per-head (pixels, d) projections; an appended zero row stands for the
  padding. The gathers produce (heads * blocks, pixels, d) directly, so the attention
  needs no transposes.
- Relative logits: instead of rel_to_abs pad/reshape tricks and 5-D expands, the
  per-(query, key) embedding ``rel_height[i - x + K - 1] + rel_width[j - y + K - 1]``
  is tabulated from the parameters (a constant in the exported graph) and applied to the
  queries with one batched matmul over the b*b query positions.
- einsum/einops are replaced by matmul/reshape/permute; the mask is a constant, and the
  fill value is -65504 instead of -3.4e38: the same float32 output (filled entries still
  underflow to exactly 0 next to real logits, and an all-filled row is uniform either
  way), and no -inf when an engine runs the graph in float16.
"""

from __future__ import annotations

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

    def table(self) -> torch.Tensor:
        """Per (query, key) pair embedding: (b*b, K*K, d) with
        E[(x, y), (i, j)] = rel_height[i - x + K - 1] + rel_width[j - y + K - 1]."""
        b = self.block_size
        K = (self.rel_height.shape[0] + 1) // 2
        dev = self.rel_height.device
        idx = (
            torch.arange(K, device=dev).unsqueeze(0)
            - torch.arange(b, device=dev).unsqueeze(1)
            + K
            - 1
        )  # (b, K)
        eh = self.rel_height[idx]  # (b, K, d): row x, key row i
        ew = self.rel_width[idx]  # (b, K, d): col y, key col j
        table = eh.reshape(b, 1, K, 1, -1) + ew.reshape(1, b, 1, K, -1)  # (x, y, i, j, d)
        return table.reshape(b * b, K * K, -1)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (n, b*b, d) block queries -> (n, b*b, K*K) relative logits."""
        rel = q.transpose(0, 1) @ self.table().transpose(1, 2)  # (b*b, n, d) @ (b*b, d, K*K)
        return rel.transpose(0, 1)


@register_module(
    "halo",
    kwargs=dict(dim=512, block_size=2, halo_size=1),
    shapes=[(1, 512, 8, 8)],
    paper="Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
    url="https://arxiv.org/abs/2103.12731",
    dynamic=("batch", "height", "width"),
    spatial_multiple=lambda kw: kw["block_size"],
)
class HaloAttention(nn.Module):
    # False reproduces the reference (and the golden output); True masks the padding instead.
    mask_padding: bool = False

    def __init__(
        self, *, dim: int, block_size: int, halo_size: int, dim_head: int = 64, heads: int = 8
    ) -> None:
        super().__init__()
        assert halo_size > 0, "halo size must be greater than 0"
        self.dim = dim
        self.heads = heads
        self.scale = dim_head**-0.5
        self.block_size = block_size
        self.halo_size = halo_size
        inner_dim = dim_head * heads
        self.rel_pos_emb = RelPosEmb(
            block_size=block_size, rel_size=block_size + (halo_size * 2), dim_head=dim_head
        )
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        b, halo, nh = self.block_size, self.halo_size, self.heads
        assert H % b == 0 and W % b == 0, "fmap dimensions must be divisible by the block size"
        assert self.dim == C, (
            f"channels for input ({C}) does not equal to the correct dimension ({self.dim})"
        )
        K = b + 2 * halo
        nbh, nbw = H // b, W // b
        nb, G = nbh * nbw, B * nh
        d = self.to_q.weight.shape[0] // nh

        # q and k/v for every pixel, heads split out: q (B*nh, H*W, d); kv (2, B*nh, H*W + 1, d),
        # where the extra last row of every (part, head) is zero and stands for the zero padding
        xt = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        qp = (
            (self.to_q(xt) * self.scale)
            .reshape(B, H * W, nh, d)
            .transpose(1, 2)
            .reshape(G * H * W, d)
        )
        kv = (
            self.to_kv(xt)
            .reshape(B, H * W, 2, nh, d)
            .permute(2, 0, 3, 1, 4)
            .reshape(2, G, H * W, d)
        )
        kv = F.pad(kv, (0, 0, 0, 1)).reshape(2 * G * (H * W + 1), d)

        # block queries and halo windows are row gathers with constant indices
        dev = x.device
        ar_b, ar_k = torch.arange(b, device=dev), torch.arange(K, device=dev)
        row_q = (torch.arange(nbh, device=dev).reshape(nbh, 1) * b + ar_b).reshape(nbh, 1, b, 1)
        col_q = (torch.arange(nbw, device=dev).reshape(nbw, 1) * b + ar_b).reshape(1, nbw, 1, b)
        pix_q = row_q * W + col_q  # (nbh, nbw, b, b)
        row_k = (torch.arange(nbh, device=dev).reshape(nbh, 1) * b + ar_k - halo).reshape(
            nbh, 1, K, 1
        )
        col_k = (torch.arange(nbw, device=dev).reshape(nbw, 1) * b + ar_k - halo).reshape(
            1, nbw, 1, K
        )
        inside = (row_k >= 0) & (row_k < H) & (col_k >= 0) & (col_k < W)  # (nbh, nbw, K, K)
        pix_k = torch.where(inside, row_k * W + col_k, H * W)  # outside -> the zero row
        heads = torch.arange(G, device=dev).reshape(G, 1, 1, 1, 1)
        idx_q = heads * (H * W) + pix_q  # (G, nbh, nbw, b, b)
        idx_k = heads * (H * W + 1) + pix_k  # (G, nbh, nbw, K, K)
        q = qp.index_select(0, idx_q.reshape(-1)).reshape(G * nb, b * b, d)
        k = kv.index_select(0, idx_k.reshape(-1)).reshape(G * nb, K * K, d)
        v = kv.index_select(0, (idx_k + G * (H * W + 1)).reshape(-1)).reshape(G * nb, K * K, d)
        # the same queries ordered (query pixel, block) for the relative logits
        q_order = idx_q.permute(3, 4, 0, 1, 2).reshape(-1)
        q_t = qp.index_select(0, q_order).reshape(b * b, G * nb, d)

        # logits: q.k plus relative position terms (q carries the scale, as in the reference)
        rel = q_t @ self.rel_pos_emb.table().transpose(1, 2)  # (b*b, G*nb, K*K)
        sim = q @ k.transpose(1, 2) + rel.transpose(0, 1)  # (G*nb, b*b, K*K)

        # the reference fills the window pixels inside the image (see module doc)
        fill = ~inside if self.mask_padding else inside
        # fill -65504 (the float16 limit), not -finfo(float32).max: same float32 result (module doc)
        sim = sim.reshape(G, nb, b * b, K * K).masked_fill(fill.reshape(nb, 1, K * K), -65504.0)

        out = sim.softmax(dim=-1).reshape(G * nb, b * b, K * K) @ v  # (G*nb, b*b, d)
        # merge heads and blocks:
        # (B, nh, nbh, nbw, b, b, d) -> (B, nbh, b, nbw, b, nh, d) = (B, H, W, inner)
        out = (
            out.reshape(B, nh, nbh, nbw, b, b, d)
            .permute(0, 2, 4, 3, 5, 1, 6)
            .reshape(B, H, W, nh * d)
        )
        return self.to_out(out).permute(0, 3, 1, 2)  # (B, C, H, W)
