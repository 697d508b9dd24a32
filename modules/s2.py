"""S2-MLPv2 attention: spatial shifts fused by split attention.

Yu et al., "S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision", 2021,
https://arxiv.org/abs/2108.01072

A channel MLP expands C to 3C; the first C channels are shifted one position in four
directions (one per quarter of the channels), the next C in the four directions in another
order, the last C are left alone; split attention weights the three branches per channel
and a channel MLP maps back to C. Same class names, constructor keywords and
``state_dict`` keys as External-Attention-pytorch's ``S2Attention.py``.

What differs from the reference, and why:

- The reference shifts by copying overlapping slices in place, so values smear over more
  than one position, and exports to ScatterND chains. Here every shift is exactly one
  position (the paper), the border row/column keeping its value, and all eight shifts plus
  the unshifted branch are one ``Gather`` of channel blocks, its index computed from the
  map size (edge clamping = the kept border; a constant in a static graph). The gather also
  reorders the result to ``(B, branch, HW, C)`` so the branch sums are over a leading axis.
- ``S2Attention`` builds ``SplitAttention`` with ``channels``; the reference always builds
  it for 512 channels, which fails for any other width.
- The global descriptor (a sum over branches and positions) and the weighted sum over
  branches are products with ones vectors: ONNX Runtime's ReduceSum over those axes took
  ~4-8x longer than the MatMul.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ._registry import register_module

# Source offset (dh, dw) of each channel quarter: out[i, j] = in[i + dh, j + dw].
_H_FWD, _H_BWD, _W_FWD, _W_BWD, _NONE = (-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)
_SHIFTS = (
    (_H_FWD, _H_BWD, _W_FWD, _W_BWD),  # branch 1
    (_W_FWD, _W_BWD, _H_FWD, _H_BWD),  # branch 2
    (_NONE, _NONE, _NONE, _NONE),  # branch 3
)


def _clamp(index: torch.Tensor, size) -> torch.Tensor:
    """Index clamped to [0, size - 1] by Max/Min (TensorRT's Clip takes no integers)."""
    last = torch.as_tensor(size - 1, device=index.device)
    return torch.minimum(torch.maximum(index, torch.zeros_like(last)), last)


def _shift_index(h, w, c: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Gather index for the three branches and the channel block size it works in.

    ``y`` (B, h, w, 3c) is viewed as rows of ``unit`` channels, (B, h*w*3c/unit, unit); the
    index picks rows so that the result is (B, 3, h*w, c) with every shift applied. Built
    from ``arange`` of the sizes ``h``, ``w`` (ints, or the exporter's traced sizes, which
    keep it valid at every size of a dynamic graph; at a static size it folds to a constant).
    """
    bounds = [0, c // 4, c // 2, 3 * c // 4, c]
    unit = math.gcd(*bounds[1:])  # largest block that never straddles two quarters
    table = np.zeros((3, c // unit, 2), dtype=np.int64)  # (branch, block, dh|dw)
    for k, quarters in enumerate(_SHIFTS):
        for q, off in enumerate(quarters):
            table[k, bounds[q] // unit : bounds[q + 1] // unit] = off
    offs = torch.from_numpy(table).to(device)
    i = torch.arange(h, device=device).reshape(1, -1, 1, 1)
    j = torch.arange(w, device=device).reshape(1, 1, -1, 1)
    src_i = _clamp(i + offs[:, :, 0].reshape(3, 1, 1, -1), h)  # edge clamp: border kept
    src_j = _clamp(j + offs[:, :, 1].reshape(3, 1, 1, -1), w)
    block = torch.arange(3 * c // unit, device=device).reshape(3, 1, 1, -1)
    index = (src_i * w + src_j) * (3 * c // unit) + block  # (branch, i, j, block)
    return index.reshape(-1), unit


class SplitAttention(nn.Module):
    def __init__(self, channel: int = 512, k: int = 3) -> None:
        super().__init__()
        self.channel = channel
        self.k = k
        self.mlp1 = nn.Linear(channel, channel, bias=False)
        self.gelu = nn.GELU()
        self.mlp2 = nn.Linear(channel, channel * k, bias=False)
        self.softmax = nn.Softmax(1)

    def fuse(self, x_all: torch.Tensor) -> torch.Tensor:
        """(B, k, N, C) branches -> (B, N, C) attention-weighted sum."""
        b, k, n, c = x_all.shape
        # Both sums are products with ones vectors: ORT's ReduceSum over these axes is slower.
        ones = x_all.new_ones(1, k * n)
        a = torch.matmul(ones, x_all.reshape(b, k * n, c)).view(b, c)  # over branches, positions
        bar = self.softmax(self.mlp2(self.gelu(self.mlp1(a))).view(b, k, 1, c))  # (B, k, 1, C)
        weighted = (bar * x_all).view(b, k, n * c)
        return torch.matmul(x_all.new_ones(1, k), weighted).view(b, n, c)  # sum over branches

    def forward(self, x_all: torch.Tensor) -> torch.Tensor:
        b, k, h, w, c = x_all.shape
        return self.fuse(x_all.reshape(b, k, h * w, c)).view(b, h, w, c)


@register_module(
    "s2",
    kwargs=dict(channels=512),
    shapes=[(1, 512, 7, 7)],
    paper="S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision",
    url="https://arxiv.org/abs/2108.01072",
    dynamic=("batch", "height", "width"),
)
class S2Attention(nn.Module):
    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.mlp1 = nn.Linear(channels, channels * 3)
        self.mlp2 = nn.Linear(channels, channels)
        self.split_attention = SplitAttention(channel=channels)
        self._index: dict[tuple[int, int, int, str], tuple[torch.Tensor, int]] = {}

    def _shift_index(self, h, w, c: int, device: torch.device) -> tuple[torch.Tensor, int]:
        if torch.jit.is_tracing():  # built from the traced sizes: the graph follows H, W
            return _shift_index(h, w, int(c), device)
        key = (int(h), int(w), int(c), str(device))  # cached so eager does not rebuild it
        if key not in self._index:
            # built as a normal tensor: a cached inference tensor would break a later export
            with torch.inference_mode(False):
                self._index[key] = _shift_index(*key[:3], device)
        return self._index[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.mlp1(x.permute(0, 2, 3, 1))  # (B, C, H, W) -> (B, H, W, 3C)
        idx, unit = self._shift_index(h, w, c, x.device)
        rows = y.reshape(b, h * w * 3 * c // unit, unit)  # channel blocks as rows
        x_all = torch.index_select(rows, 1, idx).view(b, 3, h * w, c)  # branches: (B, 3, HW, C)
        out = self.split_attention.fuse(x_all)  # (B, HW, C)
        return self.mlp2(out).view(b, h, w, c).permute(0, 3, 1, 2)  # -> (B, C, H, W)
