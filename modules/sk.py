"""SK: Selective Kernel attention.

Li et al., CVPR 2019, https://arxiv.org/abs/1903.06586

Parallel conv + BN + ReLU branches with different kernel sizes; their sum is pooled and
squeezed to ``d = max(L, channel // reduction)`` features, from which one linear layer per
branch gives channel logits; a softmax across branches mixes the branch outputs.
Same class name, keywords and ``state_dict`` keys (``convs.<i>.conv/bn``, ``fc``,
``fcs.<i>``) as External-Attention-pytorch's ``SKAttention.py``.

Differences (graph only, same math):

- In eval mode each conv + BN branch runs as one matrix product: BN is folded into the conv
  weight and bias, the input is unfolded once per branch by a single ``Gather`` (channels
  last, a zero row standing in for the padding), and the folded weight multiplies it from
  the left, which gives channels-first output directly. All weight-side work (folding,
  reordering the kernel taps) is constant-folded on export. At the registry defaults the
  convs are over 99.9% of the FLOPs and their 88 MB of fp32 weights do not fit in the
  last-level cache; ONNX Runtime's NCHWc ``Conv`` kernel on a 7x7 map streams them less
  efficiently than its GEMM does (about 8.0 ms vs 6.9 ms at 2 threads). Training mode keeps
  the plain ``Conv2d``/``BatchNorm2d`` path so BN batch statistics still work.
- Branch outputs are concatenated once along channels; pooling averages that tensor and the
  sum over branches is taken on the pooled (B, K, C) vector. The K ``fcs`` layers run as one
  Gemm (their weights are concatenated in forward, which the exporter constant-folds).
- ``kernels`` defaults to a tuple instead of the reference's (mutable) list.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register_module


def _patch_index(h: int, w: int, k: int, pad: int) -> Tuple[torch.Tensor, int, int]:
    """Flat input index of every (output pixel, kernel tap); ``h * w`` (the zero row) where the tap
    falls in the padding. Returns the (Ho * Wo, k * k) index and Ho, Wo."""
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    taps = torch.arange(k)
    iy = torch.arange(ho)[:, None] + taps - pad  # (Ho, k)
    ix = torch.arange(wo)[:, None] + taps - pad  # (Wo, k)
    idx = iy[:, None, :, None] * w + ix[None, :, None, :]  # (Ho, Wo, k, k)
    inside = ((iy >= 0) & (iy < h))[:, None, :, None] & ((ix >= 0) & (ix < w))[None, :, None, :]
    return torch.where(inside, idx, h * w).reshape(ho * wo, k * k), ho, wo


@register_module(
    "sk",
    kwargs=dict(channel=512, reduction=8),
    shapes=[(1, 512, 7, 7)],
    paper="Selective Kernel Networks",
    url="https://arxiv.org/abs/1903.06586",
)
class SKAttention(nn.Module):
    def __init__(
        self,
        channel: int = 512,
        kernels: Sequence[int] = (1, 3, 5, 7),
        reduction: int = 16,
        group: int = 1,
        L: int = 32,
    ) -> None:
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(channel, channel, k, padding=k // 2, groups=group)),
                        ("bn", nn.BatchNorm2d(channel)),
                        ("relu", nn.ReLU()),
                    ]
                )
            )
            for k in kernels
        )
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList(nn.Linear(self.d, channel) for _ in kernels)

    @staticmethod
    def _folded(branch: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
        """Conv weight with eval-mode BN folded in, as (groups, Cout/g, k*k*Cin/g) with the kernel
        taps outermost (the order the unfolded input has), and the per-channel shift."""
        conv, bn = branch.conv, branch.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        cout, cin_g, kh, kw = conv.weight.shape
        g = conv.groups
        weight = (conv.weight * scale[:, None, None, None]).reshape(g, cout // g, cin_g, kh * kw)
        return weight.transpose(2, 3).reshape(g, cout // g, kh * kw * cin_g), shift

    def _branches_as_matmuls(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        b, c, h, w = x.shape
        g = self.convs[0].conv.groups
        xg = x.reshape(b, g, c // g, h * w)  # (B, g, C/g, HW)
        # channels last plus one zero row: index h*w reads zeros, i.e. the conv padding
        xz = F.pad(xg.transpose(2, 3), (0, 0, 0, 1))  # (B, g, HW + 1, C/g)
        feats = []
        for branch in self.convs:
            weight, shift = self._folded(branch)  # (g, Cout/g, k*k*C/g), (Cout,)
            k, pad = branch.conv.kernel_size[0], branch.conv.padding[0]
            if k == 1 and pad == 0:
                ho, wo = h, w
                y = torch.matmul(weight, xg)  # (B, g, Cout/g, HW)
            else:
                idx, ho, wo = _patch_index(h, w, k, pad)
                cols = xz[:, :, idx].reshape(b, g, ho * wo, -1)  # (B, g, HoWo, k*k*C/g)
                y = torch.matmul(weight, cols.transpose(2, 3))  # (B, g, Cout/g, HoWo)
            y = torch.relu(y + shift.reshape(g, -1, 1))
            feats.append(y.reshape(b, -1, ho * wo))
        return torch.cat(feats, dim=1), ho, wo  # (B, K * C, HoWo)

    def _branches_as_convs(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        feats = [conv(x) for conv in self.convs]
        ho, wo = feats[0].shape[2:]
        return torch.cat(feats, dim=1).flatten(2), ho, wo  # (B, K * C, HoWo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        k = len(self.convs)
        if self.training or self.convs[0].bn.running_var is None:
            feats, ho, wo = self._branches_as_convs(x)  # BN needs batch statistics
        else:
            feats, ho, wo = self._branches_as_matmuls(x)
        s = feats.mean(dim=2).reshape(b, k, c).sum(dim=1)  # pooled sum of branches: (B, C)
        z = self.fc(s)  # (B, d)
        # all K branch heads as one linear layer: (B, d) -> (B, K * C)
        weight = torch.cat([fc.weight for fc in self.fcs], dim=0)
        bias = torch.cat([fc.bias for fc in self.fcs], dim=0)
        attn = torch.softmax(F.linear(z, weight, bias).reshape(b, k, c, 1), dim=1)  # across branches
        out = (feats.reshape(b, k, c, -1) * attn).sum(dim=1)  # (B, K, C, HoWo) -> (B, C, HoWo)
        return out.reshape(b, c, ho, wo)
