"""CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention.

Wang et al., ICLR 2022, https://arxiv.org/abs/2108.00154

One CrossFormer block: LayerNorm, long/short distance attention (LSDA), residual, then an
MLP with its residual. The (H, W) token map is cut into groups of ``G x G`` tokens: SDA
(``lsda_flag=0``) takes adjacent tokens, LDA (``lsda_flag=1``) tokens ``H / G`` apart.
Self-attention runs inside each group with a dynamic position bias: a small MLP
(``DynamicPosBias``) maps each relative offset (dy, dx) to one bias per head.
Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``Crossformer.py`` (``Mlp``, ``DynamicPosBias``, ``Attention``, ``CrossFormerBlock``),
including the float ``attn.biases`` offset table and the int64
``attn.relative_position_index`` buffers at their constructed values.

Differences from the reference, all numerically neutral:
- The attention scale is applied to the q rows of the qkv weight and bias (a constant in
  the exported graph) instead of multiplying q.
- The position bias depends on parameters only; the exported graph holds it as a constant
  (MLP and index gather folded away).
- The unused ``attn_mask`` (always None) and ``num_patch_size`` are kept as attributes only.
- ``drop_path`` is a small stochastic-depth module of its own (timm's ``DropPath`` in the
  reference); identity in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import UsageError
from ._layers import Mlp
from ._registry import register_module


def _norm_relu_linear(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.ReLU(inplace=True), nn.Linear(dim, out))


class DynamicPosBias(nn.Module):
    """MLP from a relative offset (dy, dx) to one attention bias per head."""

    def __init__(self, dim: int, num_heads: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.num_heads = num_heads
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = _norm_relu_linear(self.pos_dim, self.pos_dim)
        self.pos2 = _norm_relu_linear(self.pos_dim, self.pos_dim)
        self.pos3 = _norm_relu_linear(self.pos_dim, self.num_heads)

    def forward(self, biases: torch.Tensor) -> torch.Tensor:  # (M, 2) -> (M, heads)
        pos = self.pos_proj(biases)
        if self.residual:
            pos = pos + self.pos1(pos)
            pos = pos + self.pos2(pos)
        else:
            pos = self.pos2(self.pos1(pos))
        return self.pos3(pos)


def relative_position_index(gh: int, gw: int) -> torch.Tensor:
    """(gh*gw, gh*gw) int64: row of the (2gh-1)*(2gw-1) offset table for each token pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")).flatten(
        1
    )  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (rel[0] + gh - 1) * (2 * gw - 1) + (rel[1] + gw - 1)


class Attention(nn.Module):
    """Multi-head self-attention inside groups, with a dynamic position bias."""

    def __init__(
        self,
        dim: int,
        group_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        position_bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.group_size = tuple(group_size)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.position_bias = position_bias
        if position_bias:
            gh, gw = self.group_size
            self.pos = DynamicPosBias(self.dim // 4, self.num_heads, residual=False)
            offsets = torch.meshgrid(
                torch.arange(1 - gh, gh), torch.arange(1 - gw, gw), indexing="ij"
            )
            self.biases: torch.Tensor
            self.relative_position_index: torch.Tensor
            self.register_buffer(
                "biases", torch.stack(offsets).flatten(1).transpose(0, 1).float()
            )  # (M, 2)
            self.register_buffer("relative_position_index", relative_position_index(gh, gw))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def bias(self) -> torch.Tensor:
        """(heads, N, N) position bias; parameters only, so a constant in the exported graph."""
        n = self.group_size[0] * self.group_size[1]
        table = self.pos(self.biases)  # (M, heads)
        return table[self.relative_position_index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def qkv_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """qkv projection with the attention scale folded into its q rows."""
        scale = torch.ones(3 * self.dim, 1, dtype=x.dtype, device=x.device)
        scale[: self.dim] = self.scale
        bias = self.qkv.bias * scale[:, 0] if self.qkv.bias is not None else None
        return nn.functional.linear(x, self.qkv.weight * scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Grouped tokens (num_groups*B, N, C) -> (num_groups*B, N, C)."""
        b_, n, c = x.shape
        h = self.num_heads
        qkv = (
            self.qkv_scaled(x).reshape(b_, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        )  # (3, B_, h, N, d)
        attn = qkv[0] @ qkv[1].transpose(-2, -1)  # (B_, h, N, N); q already scaled
        if self.position_bias:
            attn = attn + self.bias()
        out = self.attn_drop(attn.softmax(dim=-1)) @ qkv[2]  # (B_, h, N, d)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b_, n, c)))


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


@register_module(
    "crossformer",
    kwargs=dict(dim=48, input_resolution=[56, 56], num_heads=3, group_size=7, lsda_flag=0),
    shapes=[(1, 3136, 48)],
    paper="CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention",
    url="https://arxiv.org/abs/2108.00154",
    fixed_because="input_resolution fixes the token count and its (H, W) grouping",
)
class CrossFormerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        input_resolution: Sequence[int],
        num_heads: int,
        group_size: int = 7,
        lsda_flag: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        num_patch_size: int = 1,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        self.group_size = group_size
        self.lsda_flag = lsda_flag
        self.mlp_ratio = mlp_ratio
        self.num_patch_size = num_patch_size
        if min(self.input_resolution) <= self.group_size:
            # one group covers the smaller side: no long-distance grouping
            self.lsda_flag = 0
            self.group_size = min(self.input_resolution)
        H, W = self.input_resolution
        if H % self.group_size or W % self.group_size:
            raise UsageError(
                f"crossformer: input_resolution {H}x{W} is not divisible by "
                f"group_size {self.group_size}"
            )
        if self.lsda_flag not in (0, 1):
            raise UsageError(f"crossformer: lsda_flag must be 0 (SDA) or 1 (LDA), not {lsda_flag}")
        if dim % num_heads:
            raise UsageError(f"crossformer: dim {dim} is not divisible by num_heads {num_heads}")

        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            group_size=(self.group_size, self.group_size),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(
            in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop
        )
        self.attn_mask = None

    def lsda(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W, C) normalised tokens -> attention output (B, H*W, C), grouped and ungrouped."""
        B, L, C = x.shape
        H, W = self.input_resolution
        G = self.group_size
        if self.lsda_flag == 0:  # SDA: adjacent G x G tokens
            x = x.reshape(B, H // G, G, W // G, G, C).permute(0, 1, 3, 2, 4, 5)
        else:  # LDA: tokens H/G (W/G) apart
            x = x.reshape(B, G, H // G, G, W // G, C).permute(0, 2, 4, 1, 3, 5)
        x = self.attn(x.reshape(-1, G * G, C)).reshape(
            B, H // G, W // G, G, G, C
        )  # (B*groups, G*G, C)
        x = x.permute(0, 1, 3, 2, 4, 5) if self.lsda_flag == 0 else x.permute(0, 3, 1, 4, 2, 5)
        return x.reshape(B, L, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.input_resolution
        B, L, C = x.shape
        if not torch.jit.is_tracing() and L != H * W:
            raise UsageError(
                f"crossformer: {L} tokens given, input_resolution {H}x{W} needs {H * W}"
            )
        x = x + self.drop_path(self.lsda(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))  # (B, H*W, C)
