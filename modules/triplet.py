"""Triplet attention.

Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
https://arxiv.org/abs/2010.03045

Three gates, one per pair of axes: each pools the remaining axis to its max and mean,
convolves the two maps with a 7x7 conv + BN, and scales the input by the sigmoid of the
result; the three scaled tensors are averaged. Same class names, keyword and
``state_dict`` keys (``cw``, ``hc``, ``hw``: ``.conv.conv``, ``.conv.bn``) as
External-Attention-pytorch's ``TripletAttention.py``.

Differences (graph only, same math):

- No rotation of the input. The reference permutes the whole input (``.contiguous()``)
  before and after the channel-width and height-channel gates. Here each gate pools the
  axis it would have rotated to the front directly; the hc gate, whose pooled map would
  be (H, C)-ordered, runs on the (C, H)-ordered map with the kernel's two axes swapped.
  The three gates, (B, C, 1, W), (B, C, H, 1) and (B, 1, H, W), are scaled by 1/3, summed
  by broadcasting and applied with a single Mul. The mean over H is an (H, 1)
  AveragePool (ONNX Runtime's ReduceMean over that axis is ~5x slower at the defaults).
- The 2 -> 1 channel 7x7 convs run as 1-D convs. A conv with one output channel over a
  long, thin map such as (C, W) = (512, 7) is very slow on ONNX Runtime (its blocked conv
  pads the output channels to the block size: ~0.2 ms each at the defaults). Folding the
  short axis into the channels turns it into a 1-D conv along the long axis with a banded
  weight (out-channels = short axis), a small GEMM: ~10x faster, same FLOPs at 7, and
  TensorRT takes a 1-D Conv too. The banded weight is built from the 7x7 kernel in forward
  with a constant 0/1 shift tensor and a MatMul, which the exporter constant-folds. If both
  axes are long (> 64) the fold would cost more than it saves and a plain 2-D conv is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_module

_MAX_FOLD = 64  # fold an axis into channels only up to this length (FLOPs grow with it)


def _conv_fold_rows(
    m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Stride-1, zero-padded 'same' conv with one output channel, axis 2 folded into channels.

    m: (B, Cin, F, L), weight: (1, Cin, kf, kl) with odd kf, kl -> (B, 1, F, L), computed as
    a 1-D conv along L whose in-channels are (Cin, F) and out-channels are F.
    """
    b, length = m.shape[0], m.shape[3]
    # static sizes (int(): the exporter's tracer hands them out as tensors): they size the weight
    cin, f, kf, kl = int(m.shape[1]), int(m.shape[2]), int(weight.shape[2]), int(weight.shape[3])
    # shift[o, i, t] = 1 where input row i reaches output row o through kernel row t
    o = torch.arange(f).reshape(f, 1, 1)
    i = torch.arange(f).reshape(1, f, 1)
    t = torch.arange(kf).reshape(1, 1, kf)
    shift = (i == o + t - kf // 2).to(weight.dtype)  # (F, F, kf); rows outside [0, F): zero pad
    # banded weight: (F*F, kf) @ (kf, Cin*kl) -> (F, F, Cin, kl) -> (F, Cin, F, kl)
    # -> (F, Cin*F, kl)
    w = torch.matmul(shift.reshape(f * f, kf), weight[0].transpose(0, 1).reshape(kf, cin * kl))
    w = w.reshape(f, f, cin, kl).permute(0, 2, 1, 3).reshape(f, cin * f, kl)
    bias_1d = None if bias is None else bias.expand(f)
    y = F.conv1d(m.reshape(b, cin * f, length), w, bias_1d, padding=kl // 2)  # (B, F, L)
    return y.reshape(b, 1, f, length)


def _thin_conv(m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(B, Cin, P, Q) -> (B, 1, P, Q): the gate conv, with the shorter axis folded into channels."""
    p, q = m.shape[2], m.shape[3]
    if min(p, q) > _MAX_FOLD:
        return F.conv2d(m, weight, bias, padding=(weight.shape[2] // 2, weight.shape[3] // 2))
    if p <= q:
        return _conv_fold_rows(m, weight, bias)
    # fold Q: same conv on the transposed (small, pooled) map with the transposed kernel
    return _conv_fold_rows(m.transpose(2, 3), weight.transpose(2, 3), bias).transpose(2, 3)


class BasicConv(nn.Module):
    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
        bn: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(
            in_planes,
            out_planes,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def post(self, x: torch.Tensor) -> torch.Tensor:
        """BN and ReLU after the conv."""
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


class ZPool(nn.Module):
    """Max and mean over axis ``dim`` of (B, C, H, W), stacked as two channels: (B, 2, P, Q),
    (P, Q) being the other two axes in order."""

    def forward(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        if dim == 2:
            # mean over H as an (H, 1) AveragePool: ONNX Runtime's ReduceMean over a middle
            # axis with a short inner axis is ~5x slower (41 vs 8 us at 512x7x7)
            b, c, h, w = x.shape
            mean = F.avg_pool2d(x, (int(h), 1)).reshape(b, c, w)  # static H: the pool's kernel
        else:
            mean = x.mean(dim=dim)
        return torch.stack([x.amax(dim=dim), mean], dim=1)


class AttentionGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        kernel_size = 7
        self.compress = ZPool()
        padding = (kernel_size - 1) // 2
        self.conv = BasicConv(2, 1, kernel_size, stride=1, padding=padding, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x)

    def scale(self, x: torch.Tensor, dim: int = 1, swap_kernel: bool = False) -> torch.Tensor:
        """Sigmoid gate of ``x`` pooled over ``dim``: (B, 1, P, Q), (P, Q) the other two axes.

        ``swap_kernel``: the reference sees this map with P and Q swapped; swap the kernel's axes.
        """
        weight = self.conv.conv.weight
        if swap_kernel:
            weight = weight.transpose(2, 3)
        y = _thin_conv(self.compress(x, dim), weight, self.conv.conv.bias)
        return torch.sigmoid(self.conv.post(y))


@register_module(
    "triplet",
    kwargs={},
    shapes=[(1, 512, 7, 7)],
    paper="Rotate to Attend: Convolutional Triplet Attention Module",
    url="https://arxiv.org/abs/2010.03045",
    fixed_because="its 7x7 gate convs fold the shorter pooled axis into conv channels (6x faster "
    "on ONNX Runtime), and TensorRT needs a static channel count",
)
class TripletAttention(nn.Module):
    def __init__(self, no_spatial: bool = False) -> None:
        super().__init__()
        self.cw = AttentionGate()
        self.hc = AttentionGate()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.hw = AttentionGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = 0.5 if self.no_spatial else 1 / 3  # the average, applied to the small gates
        # channel-width gate: pool over H -> (B, 1, C, W) -> (B, C, 1, W)
        gate_cw = self.cw.scale(x, dim=2).reshape(b, c, 1, w) * k
        # height-channel gate: pool over W -> (B, 1, C, H), kernel axes swapped -> (B, C, H, 1)
        gate = gate_cw + self.hc.scale(x, dim=3, swap_kernel=True).reshape(b, c, h, 1) * k
        if not self.no_spatial:
            gate = gate + self.hw.scale(x) * k  # height-width gate: (B, 1, H, W)
        return x * gate
