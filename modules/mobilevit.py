"""MobileViT block: local convolutions, a transformer across patches, and a fusion conv.

Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer", ICLR 2022, https://arxiv.org/abs/2110.02178

A 3x3 conv and a 1x1 conv (to ``dim``) give local features; the map is cut into
``patch_size`` x ``patch_size`` patches and a 3-layer transformer attends, for every
position inside a patch, across all patches; a 1x1 conv maps back to ``in_channel`` and a
3x3 conv fuses the result with the input. Same class names, constructor keywords and
``state_dict`` keys as External-Attention-pytorch's ``MobileViTAttention.py``.

What differs from the reference, and why (same outputs):

- einops ``rearrange`` is replaced by reshape/permute with static sizes.
- The patch regrouping is a 6-D transpose. The 1x1 convs around the transformer are
  per-pixel, so they commute with it: the map is regrouped while it has ``in_channel``
  channels (before ``conv2``, after ``conv3``), and ``conv2``/``conv3`` run as Linear layers
  on the tokens. The reference moves the ``dim``-channel map, ``dim / in_channel`` times
  more data (170x at the defaults), through those two slow transposes.
- Attention splits q, k, v after a single transpose of the fused projection (one Transpose
  and one Split instead of three 5-D transposes), and the softmax scale sits right after
  the q.k^T product, where ONNX Runtime folds it into the MatMul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import modules_as
from ._registry import register_module


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.ln(x), **kwargs)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        project_out = not (heads == 1 and head_dim == dim)
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.to_out = (
            nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout))
            if project_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, n, _ = x.shape
        h, d = self.heads, self.head_dim
        # (B, P, N, 3hd) -> (BP, 3h, N, d)
        qkv = self.to_qkv(x).view(b * p, n, 3 * h, d).transpose(1, 2)
        q, k, v = qkv.split(h, dim=1)  # each (BP, h, N, d)
        attn = self.attend(torch.matmul(q, k.transpose(-1, -2)) * self.scale)  # (BP, h, N, N)
        # (BP, h, N, d) -> (B, P, N, hd)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, p, n, h * d)
        return self.to_out(out)


class Transformer(nn.Module):
    def __init__(
        self, dim: int, depth: int, heads: int, head_dim: int, mlp_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList([])
        for _ in range(depth):
            self.layers.append(
                nn.ModuleList(
                    [
                        PreNorm(dim, Attention(dim, heads, head_dim, dropout)),
                        PreNorm(dim, FeedForward(dim, mlp_dim, dropout)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in modules_as(self.layers, nn.ModuleList):
            att, ffn = layer
            out = out + att(out)
            out = out + ffn(out)
        return out


@register_module(
    "mobilevit",
    kwargs=dict(in_channel=3, dim=512, kernel_size=3, patch_size=7),
    shapes=[(1, 3, 49, 49)],
    paper="MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
    url="https://arxiv.org/abs/2110.02178",
    dynamic=("batch", "height", "width"),
    spatial_multiple=lambda kw: kw["patch_size"],
)
class MobileViTAttention(nn.Module):
    def __init__(
        self, in_channel: int = 3, dim: int = 512, kernel_size: int = 3, patch_size: int = 7
    ) -> None:
        super().__init__()
        self.ph, self.pw = patch_size, patch_size
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channel, in_channel, kernel_size=kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(in_channel, dim, kernel_size=1)
        self.trans = Transformer(dim=dim, depth=3, heads=8, head_dim=64, mlp_dim=1024)
        self.conv3 = nn.Conv2d(dim, in_channel, kernel_size=1)
        self.conv4 = nn.Conv2d(2 * in_channel, in_channel, kernel_size=kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Local representation; conv2 (1x1) is applied after the patch regrouping.
        y = self.conv1(x)
        b, c, h, w = y.shape
        ph, pw = self.ph, self.pw
        nh, nw = h // ph, w // pw
        # (B, C, nh*ph, nw*pw) -> (B, ph*pw, nh*nw, C): tokens of one intra-patch position
        y = y.reshape(b, c, nh, ph, nw, pw).permute(0, 3, 5, 2, 4, 1)
        y = y.reshape(b, ph * pw, nh * nw, c)
        # conv2: (B, P, N, C) -> (B, P, N, dim)
        y = F.linear(y, self.conv2.weight.flatten(1), self.conv2.bias)

        # Global representation
        y = self.trans(y)

        # conv3 (1x1) before the regrouping back: (B, P, N, dim) -> (B, P, N, C)
        y = F.linear(y, self.conv3.weight.flatten(1), self.conv3.bias)
        # (B, ph*pw, nh*nw, C) -> (B, C, nh*ph, nw*pw)
        y = y.reshape(b, ph, pw, nh, nw, c).permute(0, 5, 3, 1, 4, 2).reshape(b, c, h, w)

        # Fusion
        return self.conv4(torch.cat([x, y], 1))
