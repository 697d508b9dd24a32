"""DANet: Dual Attention Network for Scene Segmentation.

Fu et al., CVPR 2019, https://arxiv.org/abs/1809.02983

Two branches on the same input, each a conv followed by self-attention: the position
branch attends over the H*W positions (tokens = positions, features = channels, with
q/k/v/o projections), the channel branch over the C channels (tokens = channels,
features = the H*W flattened map, output projection only). Their outputs are summed.

Differences from External-Attention-pytorch's ``DANet.py`` (same class names, keywords
and ``state_dict`` keys):

- ``DAModule`` passes ``d_model``, ``kernel_size``, ``H`` and ``W`` through to both branches;
  the reference ignores them and always builds ``d_model=512, kernel_size=3, H=W=7``.
- The attention cores (the reference imports ``ScaledDotProductAttention`` and
  ``SimplifiedScaledDotProductAttention`` with ``h=1``) are the single-head classes here,
  written as plain matmuls; the parameter names (``pa.fc_q`` ... ``pa.fc_o``) are kept. The
  q/k/v projections run as one matmul over concatenated weights (constant-folded on export),
  and the softmax scale is folded into the query. This 3-D form exports to default-domain ops
  only, whichever onnxsim passes run (the reference's 4-D per-head layout can be rewritten by
  onnxsim into ``com.microsoft::Attention``, which TensorRT cannot parse).
- The channel branch's ``fc_o`` acts on the H*W axis, so the input's H*W must equal the
  constructor's ``H * W`` (as in the reference).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._attention import init_small_linear
from ._registry import register_module


class SingleHeadAttention(nn.Module):
    """Single-head attention over tokens with q/k/v/o projections (``h=1``)."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.fc_q = nn.Linear(d_model, d_model)
        self.fc_k = nn.Linear(d_model, d_model)
        self.fc_v = nn.Linear(d_model, d_model)
        self.fc_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)  # on the attention weights, as in the reference
        init_small_linear(self.fc_q, self.fc_k, self.fc_v, self.fc_o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.d_model
        # One projection for q, k and v; the 1/sqrt(d) scale is folded into the q rows.
        scale = d**-0.5
        weight = torch.cat([self.fc_q.weight * scale, self.fc_k.weight, self.fc_v.weight], 0)
        bias = torch.cat([self.fc_q.bias * scale, self.fc_k.bias, self.fc_v.bias], 0)
        qkv = F.linear(x, weight, bias)  # (B, N, d) -> (B, N, 3d)
        q, k, v = qkv.split(d, dim=-1)
        att = torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1)  # (B, N, N)
        return self.fc_o(torch.matmul(self.dropout(att), v))  # (B, N, d)


class SimplifiedSingleHeadAttention(nn.Module):
    """Single-head attention without q/k/v projections, output projection only (``h=1``)."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.fc_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        init_small_linear(self.fc_o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = torch.matmul(x * self.d_model**-0.5, x.transpose(1, 2))  # (B, N, N)
        att = self.dropout(torch.softmax(att, dim=-1))
        return self.fc_o(torch.matmul(att, x))  # (B, N, d)


class PositionAttentionModule(nn.Module):
    def __init__(self, d_model: int = 512, kernel_size: int = 3, H: int = 7, W: int = 7) -> None:
        super().__init__()
        self.cnn = nn.Conv2d(d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2)
        self.pa = SingleHeadAttention(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.cnn(x).reshape(b, c, h * w).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)
        return self.pa(y)  # (B, HW, C)


class ChannelAttentionModule(nn.Module):
    def __init__(self, d_model: int = 512, kernel_size: int = 3, H: int = 7, W: int = 7) -> None:
        super().__init__()
        self.cnn = nn.Conv2d(d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2)
        self.pa = SimplifiedSingleHeadAttention(H * W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.cnn(x).reshape(b, c, h * w)  # (B, C, H, W) -> (B, C, HW)
        return self.pa(y)  # (B, C, HW)


@register_module(
    "danet",
    kwargs=dict(d_model=512, kernel_size=3, H=7, W=7),
    shapes=[(1, 512, 7, 7)],
    paper="Dual Attention Network for Scene Segmentation",
    url="https://arxiv.org/abs/1809.02983",
    fixed_because="its channel attention projects over the constructor's H*W positions",
)
class DAModule(nn.Module):
    def __init__(self, d_model: int = 512, kernel_size: int = 3, H: int = 7, W: int = 7) -> None:
        super().__init__()
        self.position_attention_module = PositionAttentionModule(d_model, kernel_size, H, W)
        self.channel_attention_module = ChannelAttentionModule(d_model, kernel_size, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p_out = self.position_attention_module(x).transpose(1, 2)  # (B, HW, C) -> (B, C, HW)
        c_out = self.channel_attention_module(x)  # (B, C, HW)
        return (p_out + c_out).reshape(b, c, h, w)
