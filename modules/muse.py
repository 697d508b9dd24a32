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

import torch
from torch import nn
from torch.nn import functional as F

from ._attention import MultiHeadAttention, split_heads
from ._registry import register_module


class Depth_Pointwise_Conv1d(nn.Module):
    """Depth-wise conv (kernel ``k``; identity for k == 1) followed by a point-wise conv."""

    def __init__(self, in_ch: int, out_ch: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.depth_conv: nn.Identity | nn.Conv1d
        if k == 1:
            self.depth_conv = nn.Identity()
        else:
            self.depth_conv = nn.Conv1d(in_ch, in_ch, kernel_size=k, groups=in_ch, padding=k // 2)
        self.pointwise_conv = nn.Conv1d(in_ch, out_ch, kernel_size=1, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Run as 2-D convs on (B, C, 1, N) with the same weights: ONNX Runtime's CPU provider has
        # a fast blocked (NCHWc) kernel for 2-D depth-wise convs, while a grouped 1-D Conv runs
        # one tiny GEMM per channel (about 10x slower at 4096 channels).
        x = x.unsqueeze(2)  # (B, C, N) -> (B, C, 1, N)
        if isinstance(self.depth_conv, nn.Conv1d):  # k != 1
            conv = self.depth_conv
            x = F.conv2d(
                x, conv.weight.unsqueeze(2), conv.bias, padding=(0, self.k // 2), groups=conv.groups
            )
        pw = self.pointwise_conv
        return F.conv2d(x, pw.weight.unsqueeze(2), pw.bias).squeeze(2)  # (B, out_ch, N)


@register_module(
    "muse",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="MUSE: Parallel Multi-Scale Attention for Sequence to Sequence Learning",
    url="https://arxiv.org/abs/1911.09483",
    dynamic=("batch", "tokens"),
)
class MUSEAttention(MultiHeadAttention):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float = 0.1) -> None:
        super().__init__(d_model, d_k, d_v, h, dropout)
        self.conv1 = Depth_Pointwise_Conv1d(h * d_v, d_model, 1)
        self.conv3 = Depth_Pointwise_Conv1d(h * d_v, d_model, 3)
        self.conv5 = Depth_Pointwise_Conv1d(h * d_v, d_model, 5)
        self.dy_paras = nn.Parameter(torch.ones(3))
        self.softmax = nn.Softmax(-1)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # MultiHeadAttention's forward, keeping the projected values for the conv branch
        q, k, v_flat = self.project(queries, keys, values)  # v_flat: (B, Nk, h*d_v)
        v = split_heads(v_flat, self.h, self.d_v)  # (B, h, Nk, d_v)
        out = self.fc_o(self.mix(q, k, v, attention_mask, attention_weights))  # (B, Nq, d_model)
        return out + self.multi_scale_conv(v_flat.transpose(1, 2)).transpose(1, 2)

    def multi_scale_conv(self, v: torch.Tensor) -> torch.Tensor:
        """(B, h*d_v, Nk) -> (B, d_model, Nk); softmax of the parameter, not a rebinding of it."""
        w = self.softmax(self.dy_paras)  # (3,)
        return w[0] * self.conv1(v) + w[1] * self.conv3(v) + w[2] * self.conv5(v)
