"""PSA: the Pyramid Split Attention module of EPSANet.

Zhang et al., "EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional
Neural Network", ACCV 2022, https://arxiv.org/abs/2105.14447

The channels are split into ``S`` parts; part ``i`` goes through its own conv with kernel
``2i + 3`` (SPC), each result gets an SE gate, the gates are softmax-normalised across
the ``S`` parts per channel, and every part is scaled by its weight.

Compatibility: class name and keywords as External-Attention-pytorch's ``PSA.py``. That
file keeps ``convs`` and ``se_blocks`` in plain Python lists in some versions (so their
weights never reach ``state_dict``) and writes the conv outputs back into a view of its
input. Here they are ``nn.ModuleList``s, keys ``convs.<i>.*`` and ``se_blocks.<i>.{1,3}.*``
as in the golden vectors, and the input is never modified (the golden output is that of
the reference applied to the unmodified input).

Graph: the input is split once (one ``Split``), each part goes through its conv and the
results are concatenated; measured on ONNX Runtime this beats one grouped conv with the
kernels zero-padded to the largest size (about 2x the FLOPs; the padded weight also made
eager slower). The ``S`` SE blocks run as two grouped 1x1 convs (``groups=S``) on the
pooled (B, C, 1, 1) vector, with their weights concatenated in forward (constant-folded
on export), and the softmax over parts is taken on a (B, S, C/S, 1, 1) view, so the
attention path has no per-part slicing at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import GlobalAvgPool, module_as, modules_as
from ._registry import register_module


@register_module(
    "psa",
    kwargs=dict(channel=512, reduction=8),
    shapes=[(1, 512, 7, 7)],
    paper="EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network",
    url="https://arxiv.org/abs/2105.14447",
    dynamic=("batch", "height", "width"),
)
class PSA(nn.Module):
    def __init__(self, channel: int = 512, reduction: int = 4, S: int = 4) -> None:
        super().__init__()
        self.S = S
        ci, cr = channel // S, channel // (S * reduction)
        self.convs = nn.ModuleList(
            nn.Conv2d(ci, ci, kernel_size=2 * (i + 1) + 1, padding=i + 1) for i in range(S)
        )
        self.se_blocks = nn.ModuleList(
            nn.Sequential(
                GlobalAvgPool(),
                nn.Conv2d(ci, cr, kernel_size=1, bias=False),
                nn.ReLU(),
                nn.Conv2d(cr, ci, kernel_size=1, bias=False),
                nn.Sigmoid(),
            )
            for _ in range(S)
        )
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.S
        # SPC: conv i on channel part i: (B, C, H, W) -> S x (B, C/S, H, W) -> (B, C, H, W)
        parts = torch.split(x, c // s, dim=1)
        spc = torch.cat([conv(part) for conv, part in zip(self.convs, parts)], dim=1)

        # SE per part as grouped 1x1 convs on the pooled vector: (B, C, 1, 1)
        blocks = modules_as(self.se_blocks, nn.Sequential)
        w1 = torch.cat(
            [module_as(se[1], nn.Conv2d).weight for se in blocks]
        )  # (S*C/(S r), C/S, 1, 1)
        w2 = torch.cat([module_as(se[3], nn.Conv2d).weight for se in blocks])  # (C, C/(S r), 1, 1)
        z = F.relu(F.conv2d(spc.mean(dim=(2, 3), keepdim=True), w1, groups=s))
        se = torch.sigmoid(F.conv2d(z, w2, groups=s))

        attn = self.softmax(se.reshape(b, s, c // s, 1, 1))  # across the S parts, per channel
        return spc * attn.reshape(b, c, 1, 1)
