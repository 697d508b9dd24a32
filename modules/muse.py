"""MUSE: parallel multi-scale attention (self-attention + multi-scale depth-wise convs).

Zhao et al., "MUSE: Parallel Multi-Scale Attention for Sequence to Sequence Learning",
https://arxiv.org/abs/1911.09483

Multi-head self-attention in parallel with depth-wise separable 1-D convolutions (kernel
1, 3, 5) over the projected values; the conv branches are mixed by ``softmax(dy_paras)``.
Same class names, keywords, forward signature and ``state_dict`` keys as
External-Attention-pytorch's ``MUSEAttention.py``.

Differences from the reference:
- The reference rebinds ``self.dy_paras = nn.Parameter(softmax(self.dy_paras))`` on every
  forward, so every call (a check run, the export trace) changes the weights. Here the
  branch weights ``softmax(dy_paras)`` are computed in each forward and the parameter is
  never written; the output equals the reference's first call on a loaded state_dict.
- Head split/merge by ``reshape``/``transpose``; the conv branch input is the value
  projection transposed to channels-first, which is what the reference's permute + view
  produces (channels ordered head-major).
- The 1-D convs run as 2-D convs over (B, C, 1, N) with the same (unsqueezed) weights,
  which ONNX Runtime executes much faster (see ``Depth_Pointwise_Conv1d``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register_module


class Depth_Pointwise_Conv1d(nn.Module):
    """Depth-wise conv (kernel ``k``; identity for k == 1) followed by a point-wise conv."""

    def __init__(self, in_ch: int, out_ch: int, k: int) -> None:
        super().__init__()
        self.k = k
        if k == 1:
            self.depth_conv: nn.Module = nn.Identity()
        else:
            self.depth_conv = nn.Conv1d(in_ch, in_ch, kernel_size=k, groups=in_ch, padding=k // 2)
        self.pointwise_conv = nn.Conv1d(in_ch, out_ch, kernel_size=1, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Run as 2-D convs on (B, C, 1, N) with the same weights: ONNX Runtime's CPU provider has
        # a fast blocked (NCHWc) kernel for 2-D depth-wise convs, while a grouped 1-D Conv runs
        # one tiny GEMM per channel (about 10x slower at 4096 channels).
        x = x.unsqueeze(2)  # (B, C, N) -> (B, C, 1, N)
        if self.k != 1:
            conv = self.depth_conv
            x = F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, padding=(0, self.k // 2), groups=conv.groups)
        pw = self.pointwise_conv
        return F.conv2d(x, pw.weight.unsqueeze(2), pw.bias).squeeze(2)  # (B, out_ch, N)


@register_module(
    "muse",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="MUSE: Parallel Multi-Scale Attention for Sequence to Sequence Learning",
    url="https://arxiv.org/abs/1911.09483",
)
class MUSEAttention(nn.Module):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc_q = nn.Linear(d_model, h * d_k)
        self.fc_k = nn.Linear(d_model, h * d_k)
        self.fc_v = nn.Linear(d_model, h * d_v)
        self.fc_o = nn.Linear(h * d_v, d_model)
        self.dropout = nn.Dropout(dropout)

        self.conv1 = Depth_Pointwise_Conv1d(h * d_v, d_model, 1)
        self.conv3 = Depth_Pointwise_Conv1d(h * d_v, d_model, 3)
        self.conv5 = Depth_Pointwise_Conv1d(h * d_v, d_model, 5)
        self.dy_paras = nn.Parameter(torch.ones(3))
        self.softmax = nn.Softmax(-1)

        self.d_model = d_model
        self.d_k = d_k
        self.d_v = d_v
        self.h = h
        self.scale = 1.0 / math.sqrt(d_k)
        # Same initialisation as the reference (its Conv2d rule never matches the Conv1d's).
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.normal_(fc.weight, std=0.001)
            nn.init.zeros_(fc.bias)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        attention_weights: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        b, nq = queries.shape[:2]
        nk = keys.shape[1]
        q = self.fc_q(queries).reshape(b, nq, self.h, self.d_k).transpose(1, 2)  # (B, h, Nq, d_k)
        k = self.fc_k(keys).reshape(b, nk, self.h, self.d_k).permute(0, 2, 3, 1)  # (B, h, d_k, Nk)
        v_flat = self.fc_v(values)  # (B, Nk, h*d_v)
        v = v_flat.reshape(b, nk, self.h, self.d_v).transpose(1, 2)  # (B, h, Nk, d_v)

        att = torch.matmul(q, k) * self.scale  # (B, h, Nq, Nk)
        if attention_weights is not None:
            att = att * attention_weights
        if attention_mask is not None:
            att = att.masked_fill(attention_mask, float("-inf"))
        att = self.dropout(torch.softmax(att, dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, nq, self.h * self.d_v)  # (B, Nq, h*d_v)
        out = self.fc_o(out)  # (B, Nq, d_model)

        # Multi-scale conv branch; softmax of the parameter, not a rebinding of it.
        w = self.softmax(self.dy_paras)  # (3,)
        v2 = v_flat.transpose(1, 2)  # (B, Nk, h*d_v) -> (B, h*d_v, Nk)
        out2 = w[0] * self.conv1(v2) + w[1] * self.conv3(v2) + w[2] * self.conv5(v2)  # (B, d_model, Nk)
        return out + out2.transpose(1, 2)  # (B, N, d_model)
