"""FcaNet: frequency channel attention.

Qin et al., ICCV 2021, https://arxiv.org/abs/2012.11879

SE with a richer squeeze: each group of channels is pooled with a different 2-D DCT basis
function (global average pooling is the lowest one) instead of the mean, then the usual
bottleneck MLP and sigmoid gate. Same class names, keywords, fixed DCT buffer and
``state_dict`` keys (``dct_layer.weight``, ``fc.0``, ``fc.2``) as the authors'
cfzd/FcaNet ``model/layer.py``.

An input whose size differs from (dct_h, dct_w) is adaptive-average-pooled to it first, as
in the reference. Pooling is linear, so it is folded into the filter: with P_h (dct_h, H)
and P_w (dct_w, W) the pooling matrices, ``sum(pool(x) * F) = sum(x * P_h^T F P_w)``. The
graph is then Mul -> ReduceSum at every size: at a static size onnxsim folds the filter to
one constant, and with dynamic H, W the filter is rebuilt from the input's shape (the
reference's ``adaptive_avg_pool2d`` has no ONNX form for a symbolic size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._registry import register_module

# Frequency (u, v) pairs in a 7x7 DCT grid, best first by the paper's single-frequency
# ImageNet ablation ("top"), lowest first ("low"), worst first ("bot").
_FREQUENCIES = {  # kind: (u indices, v indices)
    "top": (
        [
            0,
            0,
            6,
            0,
            0,
            1,
            1,
            4,
            5,
            1,
            3,
            0,
            0,
            0,
            3,
            2,
            4,
            6,
            3,
            5,
            5,
            2,
            6,
            5,
            5,
            3,
            3,
            4,
            2,
            2,
            6,
            1,
        ],
        [
            0,
            1,
            0,
            5,
            2,
            0,
            2,
            0,
            0,
            6,
            0,
            4,
            6,
            3,
            5,
            2,
            6,
            3,
            3,
            3,
            5,
            1,
            1,
            2,
            4,
            2,
            1,
            1,
            3,
            0,
            5,
            3,
        ],
    ),
    "low": (
        [
            0,
            0,
            1,
            1,
            0,
            2,
            2,
            1,
            2,
            0,
            3,
            4,
            0,
            1,
            3,
            0,
            1,
            2,
            3,
            4,
            5,
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            1,
            2,
            3,
            4,
        ],
        [
            0,
            1,
            0,
            1,
            2,
            0,
            1,
            2,
            2,
            3,
            0,
            0,
            4,
            3,
            1,
            5,
            4,
            3,
            2,
            1,
            0,
            6,
            5,
            4,
            3,
            2,
            1,
            0,
            6,
            5,
            4,
            3,
        ],
    ),
    "bot": (
        [
            6,
            1,
            3,
            3,
            2,
            4,
            1,
            2,
            4,
            4,
            5,
            1,
            4,
            6,
            2,
            5,
            6,
            1,
            6,
            2,
            2,
            4,
            3,
            3,
            5,
            5,
            6,
            2,
            5,
            5,
            3,
            6,
        ],
        [
            6,
            4,
            4,
            6,
            6,
            3,
            1,
            4,
            4,
            5,
            6,
            5,
            2,
            2,
            5,
            1,
            4,
            3,
            5,
            0,
            3,
            1,
            1,
            2,
            4,
            2,
            1,
            1,
            5,
            3,
            3,
            3,
        ],
    ),
}
FREQ_SEL_METHODS = tuple(f"{kind}{n}" for kind in _FREQUENCIES for n in (1, 2, 4, 8, 16, 32))


def get_freq_indices(method: str) -> tuple[list[int], list[int]]:
    """The first N (u, v) frequencies of a 7x7 grid for ``method`` = top/low/bot + N."""
    if method not in FREQ_SEL_METHODS:
        raise ValueError(
            f"freq_sel_method must be one of {', '.join(FREQ_SEL_METHODS)}; got {method!r}"
        )
    xs, ys = _FREQUENCIES[method[:3]]
    count = int(method[3:])
    return xs[:count], ys[:count]


def dct_basis(freq: int, size: int) -> torch.Tensor:
    """1-D orthonormal DCT-II basis vector ``freq`` of length ``size`` (float64)."""
    pos = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return basis * math.sqrt(2) if freq else basis


def dct_filters(
    height: int, width: int, mapper_x: Sequence[int], mapper_y: Sequence[int], channel: int
) -> torch.Tensor:
    """(channel, height, width): equal channel groups, group i the 2-D basis
    (mapper_x[i], mapper_y[i])."""
    pairs = zip(mapper_x, mapper_y)
    bases = torch.stack([torch.outer(dct_basis(u, height), dct_basis(v, width)) for u, v in pairs])
    # float64 products rounded once to float32, as the reference's Python-float fill
    return bases.repeat_interleave(channel // len(mapper_x), dim=0).float()


def adaptive_pool_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """(size_out, size_in) matrix of adaptive_avg_pool's 1-D averaging.

    Row i averages inputs [floor(i n / m), ceil((i + 1) n / m)). ``size_in`` may be a traced
    size; the integer divisions truncate, which is floor for these non-negative values.
    """
    index = torch.arange(size_out, device=like.device)
    start = torch.div(index * size_in, size_out, rounding_mode="trunc")
    end = torch.div((index + 1) * size_in + size_out - 1, size_out, rounding_mode="trunc")
    pos = torch.arange(size_in, device=like.device)
    inside = (pos >= start.unsqueeze(1)) & (pos < end.unsqueeze(1))
    return inside.to(like.dtype) / (end - start).unsqueeze(1).to(like.dtype)


class MultiSpectralDCTLayer(nn.Module):
    """Per-channel DCT pooling: (B, C, H, W) -> (B, C), the input first pooled to
    (height, width)."""

    def __init__(
        self,
        height: int,
        width: int,
        mapper_x: Sequence[int],
        mapper_y: Sequence[int],
        channel: int,
    ) -> None:
        super().__init__()
        assert len(mapper_x) == len(mapper_y), "one v per u"
        if channel % len(mapper_x):
            raise ValueError(
                f"channel ({channel}) must be divisible by the frequency count ({len(mapper_x)})"
            )
        self.num_freq = len(mapper_x)
        self.weight: torch.Tensor
        self.register_buffer("weight", dct_filters(height, width, mapper_x, mapper_y, channel))

    def filter_for(self, h: int, w: int) -> torch.Tensor:
        """The DCT filter with adaptive average pooling to its size folded in: (C, h, w)."""
        if not torch.jit.is_tracing() and (h, w) == tuple(self.weight.shape[1:]):
            return (
                self.weight
            )  # eager fast path; a trace keeps the generic form (folded when static)
        pool_h = adaptive_pool_matrix(h, self.weight.shape[1], self.weight)  # (dct_h, h)
        pool_w = adaptive_pool_matrix(w, self.weight.shape[2], self.weight)  # (dct_w, w)
        return pool_h.t() @ self.weight @ pool_w  # (h, dct_h) @ (C, dct_h, dct_w) @ (dct_w, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dct_filter = self.filter_for(x.shape[2], x.shape[3])  # (C, H, W)
        return (x * dct_filter).sum(dim=(2, 3))  # (B, C, H, W) -> (B, C)


@register_module(
    "fca",
    kwargs=dict(channel=512, dct_h=7, dct_w=7, reduction=16, freq_sel_method="top16"),
    shapes=[(1, 512, 7, 7)],
    paper="FcaNet: Frequency Channel Attention Networks",
    url="https://arxiv.org/abs/2012.11879",
    dynamic=("batch", "height", "width"),
)
class MultiSpectralAttentionLayer(nn.Module):
    def __init__(
        self,
        channel: int,
        dct_h: int,
        dct_w: int,
        reduction: int = 16,
        freq_sel_method: str = "top16",
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.dct_h = dct_h
        self.dct_w = dct_w
        mapper_x, mapper_y = get_freq_indices(freq_sel_method)
        self.num_split = len(mapper_x)
        # Frequencies are given on a 7x7 grid; scale them so e.g. (1, 1) in 7x7 is (2, 2) in 14x14.
        mapper_x = [u * (dct_h // 7) for u in mapper_x]
        mapper_y = [v * (dct_w // 7) for v in mapper_y]
        self.dct_layer = MultiSpectralDCTLayer(dct_h, dct_w, mapper_x, mapper_y, channel)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        y = self.fc(self.dct_layer(x))  # (B, C, H, W) -> (B, C)
        return x * y.reshape(b, c, 1, 1)
