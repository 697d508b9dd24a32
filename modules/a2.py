"""A^2-Nets: Double Attention Networks.

Chen et al., NeurIPS 2018, https://arxiv.org/abs/1810.11579

Step 1 (gather): ``c_n`` attention maps, each a softmax over the H*W positions, pool the
``c_m`` features A into ``c_n`` global descriptors. Step 2 (distribute): at every position,
an attention vector (a softmax over the ``c_n`` descriptors) mixes them back. An optional
1x1 conv maps ``c_m`` back to ``in_channels``.

Differences from External-Attention-pytorch's ``A2Atttention.py`` (same class name,
keywords and ``state_dict`` keys):

- The reference calls ``softmax`` without ``dim`` (PyTorch then picks dim 0, the batch, for
  the 3-D tensors), which mixes samples and gives 1.0 everywhere at batch size 1. This
  follows the paper: the attention maps are normalised over positions (dim -1), the
  attention vectors over the ``c_n`` descriptors (dim 1).
- ``convA``, ``convB`` and ``convV`` read the same input: they run as one 1x1 conv over
  their concatenated weights (concatenated in forward, constant-folded on export) and a
  Split, so the input is read once.
- The rest is the same math with reshapes instead of views; ``bmm`` is ``matmul``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from ._layers import bias_of
from ._registry import register_module


@register_module(
    "a2",
    kwargs=dict(in_channels=512, c_m=128, c_n=128, reconstruct=True),
    shapes=[(1, 512, 7, 7)],
    paper="A^2-Nets: Double Attention Networks",
    url="https://arxiv.org/abs/1810.11579",
    dynamic=("batch", "height", "width"),
)
class DoubleAttention(nn.Module):
    def __init__(self, in_channels: int, c_m: int, c_n: int, reconstruct: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.reconstruct = reconstruct
        self.c_m = c_m
        self.c_n = c_n
        self.convA = nn.Conv2d(in_channels, c_m, 1)
        self.convB = nn.Conv2d(in_channels, c_n, 1)
        self.convV = nn.Conv2d(in_channels, c_n, 1)
        if self.reconstruct:
            self.conv_reconstruct = nn.Conv2d(c_m, in_channels, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        # Same initialisation as the reference.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _c, h, w = x.shape
        convs = (self.convA, self.convB, self.convV)
        weight = torch.cat([conv.weight for conv in convs])  # (c_m + 2 c_n, C, 1, 1)
        bias = torch.cat([bias_of(conv) for conv in convs])
        proj = F.conv2d(x, weight, bias).flatten(2)  # (B, c_m + 2 c_n, HW)
        feats, maps, vecs = proj.split([self.c_m, self.c_n, self.c_n], dim=1)
        maps = torch.softmax(maps, dim=-1)  # each attention map sums to 1 over positions
        vecs = torch.softmax(vecs, dim=1)  # each position's attention vector sums to 1
        descriptors = torch.matmul(feats, maps.transpose(1, 2))  # (B, c_m, c_n)
        z = torch.matmul(descriptors, vecs)  # (B, c_m, HW)
        z = z.reshape(b, self.c_m, h, w)  # -> (B, c_m, H, W)
        if self.reconstruct:
            z = self.conv_reconstruct(z)
        return z
