"""CoT: Contextual Transformer Networks for Visual Recognition.

Li et al., TPAMI 2022, https://arxiv.org/abs/2107.12292

A grouped k x k conv gives the static context keys K1; two 1x1 convs on [K1, X] give an
attention map; softmax over positions of that map gates the values (a 1x1 conv of X),
giving the dynamic context K2. The output is K1 + K2.

Same class name, keywords and ``state_dict`` keys as External-Attention-pytorch's
``CoTAttention.py``. The reference's last conv produces ``k*k`` maps per channel and then
averages them; since that conv is linear, the average is taken over its weight rows and
bias instead (a (C, 2C/4) conv instead of a (k*k*C, 2C/4) one; constant-folded on
export). Eval-mode BatchNorm is folded into the convs by ONNX Runtime.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._layers import bias_of, module_as
from ._registry import register_module


@register_module(
    "cot",
    kwargs=dict(dim=512, kernel_size=3),
    shapes=[(1, 512, 7, 7)],
    paper="Contextual Transformer Networks for Visual Recognition",
    url="https://arxiv.org/abs/2107.12292",
    dynamic=("batch", "height", "width"),
)
class CoTAttention(nn.Module):
    def __init__(self, dim: int = 512, kernel_size: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(
                dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=4, bias=False
            ),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
        )
        self.value_embed = nn.Sequential(
            nn.Conv2d(dim, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
        )
        factor = 4
        self.attention_embed = nn.Sequential(
            nn.Conv2d(2 * dim, 2 * dim // factor, 1, bias=False),
            nn.BatchNorm2d(2 * dim // factor),
            nn.ReLU(),
            nn.Conv2d(2 * dim // factor, kernel_size * kernel_size * dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kk = self.kernel_size * self.kernel_size
        k1 = self.key_embed(x)  # (B, C, H, W): static context
        v = self.value_embed(x).reshape(b, c, h * w)  # (B, C, HW)
        hidden = self.attention_embed[:3](torch.cat([k1, x], dim=1))  # (B, 2C/4, H, W)
        # Mean over the k*k maps of each channel, taken on the last conv's parameters:
        # output channel i*kk + j belongs to channel i.
        last = module_as(self.attention_embed[3], nn.Conv2d)
        weight = last.weight.reshape(c, kk, -1, 1, 1).mean(dim=1)  # -> (C, 2C/4, 1, 1)
        bias = bias_of(last).reshape(c, kk).mean(dim=1)  # (C,)
        att = F.conv2d(hidden, weight, bias).reshape(b, c, h * w)  # (B, C, HW)
        k2 = torch.softmax(att, dim=-1) * v  # softmax over positions
        return k1 + k2.reshape(b, c, h, w)
