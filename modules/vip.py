"""Vision Permutator: Weighted Permute-MLP.

Hou et al., TPAMI 2022, https://arxiv.org/abs/2106.12368

Three linear branches mix the channels (``mlp_c``), the height x channel-segment
(``mlp_h``) and the width x channel-segment (``mlp_w``) of an NHWC map; a small MLP on the
globally averaged sum gives per-channel softmax weights over the three branches.
Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``ViP.py``. Like the reference, ``mlp_h``/``mlp_w`` act on ``H * (C / seg_dim)`` and
``W * (C / seg_dim)`` features, so the input needs ``H == W == seg_dim``.

Differences from the reference, all numerically neutral:
- the h/w permutes are written so that each branch needs a single Transpose in and out
  (the reference's permute/reshape pairs simplify to the same thing, but here the channel
  segment stays innermost so the transposes move whole ``C / seg_dim`` runs);
- the branch weights are taken with one softmax over a trailing axis of size 3 and split
  by slicing, instead of a permute to a leading axis and integer indexing (Gathers).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Mlp
from ._registry import register_module


class MLP(Mlp):
    """The reference's ``MLP``: ``Mlp`` with every width given and dropout 0.1 by default."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.1,
    ) -> None:
        super().__init__(in_features, hidden_features, out_features, act_layer, drop)


@register_module(
    "vip",
    kwargs=dict(dim=512, seg_dim=8),
    shapes=[(1, 8, 8, 512)],
    paper="Vision Permutator: A Permutable MLP-Like Architecture for Visual Recognition",
    url="https://arxiv.org/abs/2106.12368",
    fixed_because="mlp_h and mlp_w mix H (or W) x dim/seg_dim features with dim x dim weights, "
    "so H = W = seg_dim",
    layout="NHWC",
)
class WeightedPermuteMLP(nn.Module):
    def __init__(
        self, dim: int, seg_dim: int = 8, qkv_bias: bool = False, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.seg_dim = seg_dim
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_h = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_w = nn.Linear(dim, dim, bias=qkv_bias)
        self.reweighting = MLP(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        g = self.seg_dim
        s = C // g
        c_embed = self.mlp_c(x)  # (B, H, W, C)

        x5 = x.reshape(B, H, W, g, s)
        # height branch: mix (H, s) per (W, segment)
        h_embed = x5.permute(0, 2, 3, 1, 4).reshape(B, W, g, H * s)  # (B, W, g, H*s)
        h_embed = (
            self.mlp_h(h_embed).reshape(B, W, g, H, s).permute(0, 3, 1, 2, 4).reshape(B, H, W, C)
        )
        # width branch: mix (W, s) per (H, segment)
        w_embed = x5.permute(0, 1, 3, 2, 4).reshape(B, H, g, W * s)  # (B, H, g, W*s)
        w_embed = (
            self.mlp_w(w_embed).reshape(B, H, g, W, s).permute(0, 1, 3, 2, 4).reshape(B, H, W, C)
        )

        pooled = (c_embed + h_embed + w_embed).mean(dim=(1, 2))  # (B, H, W, C) -> (B, C)
        weight = self.reweighting(pooled).reshape(B, 1, 1, C, 3).softmax(dim=-1)  # (B, 1, 1, C, 3)
        out = c_embed * weight[..., 0] + w_embed * weight[..., 1] + h_embed * weight[..., 2]
        return self.proj_drop(self.proj(out))
