"""SK: Selective Kernel attention.

Li et al., CVPR 2019, https://arxiv.org/abs/1903.06586

Parallel conv + BN + ReLU branches with different kernel sizes; their sum is pooled and
squeezed to ``d = max(L, channel // reduction)`` features, from which one linear layer per
branch gives channel logits; a softmax across branches mixes the branch outputs.
Same class name, keywords and ``state_dict`` keys (``convs.<i>.conv/bn``, ``fc``,
``fcs.<i>``) as External-Attention-pytorch's ``SKAttention.py``.

Differences (graph only, same math):

- Exported in eval mode with big convs on small maps (>= 4M conv weights and
  ``4 * B * H * W * group <= channel``, e.g. the registry defaults), the conv + BN branches
  become matrix products instead of ``Conv`` nodes. The kernels' tap sets are nested (1x1 in
  3x3 in 5x5 ...), so every tap is used by the widest few branches; taps are grouped by those
  branches and by the band of output pixels they reach without reading padding (the top and
  bottom edge of each ring of taps reach a band of rows, the left and right edge a band of
  columns). Each group is unfolded for its band only by one ``Gather`` (channels last, a zero
  row standing in for the padding), multiplied from the left by the BN-folded weights of its
  branches, stacked, and zero-padded back into place; the groups are summed. The weight-side
  work (BN folding, tap selection, stacking) is constant-folded on export.
  Why: at the defaults the convs are >99.9% of the FLOPs and their 88 MB of fp32 weights come
  from DRAM on every call. ONNX Runtime's NCHWc ``Conv`` does that at ~59% of the machine's
  GEMM peak (8.0 ms at 2 threads); a plain unfold + GEMM gets ~68% (6.8 ms) but multiplies the
  zero padding too, 36% of the conv MACs on a 7x7 map; the banded groups skip most of it and
  take ~5.8-6.0 ms. The FLOPs reported for the module are PyTorch's conv count, padding
  included (2158 MFLOP); the exported graph executes 1571 MFLOP of GEMMs. On larger maps (the
  unfolded input outgrows the weights) or for small convs ORT's ``Conv`` is as fast or faster,
  so those export the convs. Eager PyTorch (any mode) and training always run the plain
  ``Conv2d``/``BatchNorm2d`` branches: PyTorch's conv is faster there (about 2.5x at the
  defaults), and BN needs batch statistics in training.
- Branch outputs are stacked along channels; pooling averages that tensor and the sum over
  branches is taken on the pooled (B, K, C) vector. The K ``fcs`` layers run as one Gemm (their
  weights are concatenated in forward, which the exporter constant-folds).
- ``kernels`` defaults to a tuple instead of the reference's (mutable) list.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence, Set, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register_module


def _tap_index(
    h: int, w: int, ys: range, xs: range, taps: Sequence[Tuple[int, int]], device: torch.device
) -> torch.Tensor:
    """Flat input index for every output pixel (y, x) in ys x xs (row-major) and tap offset
    (dy, dx); ``h * w`` (the zero row) where the tap falls in the padding: (Ny * Nx, n)."""
    dy = torch.tensor([t[0] for t in taps], device=device)
    dx = torch.tensor([t[1] for t in taps], device=device)
    iy = torch.tensor(list(ys), device=device)[:, None] + dy  # (Ny, n)
    ix = torch.tensor(list(xs), device=device)[:, None] + dx  # (Nx, n)
    inside = ((iy >= 0) & (iy < h))[:, None, :] & ((ix >= 0) & (ix < w))[None, :, :]
    idx = torch.where(inside, iy[:, None, :] * w + ix[None, :, :], h * w)  # (Ny, Nx, n)
    return idx.reshape(len(ys) * len(xs), len(taps))


def _taps(k: int, pad: int) -> Set[Tuple[int, int]]:
    """Tap offsets (dy, dx) of a k x k conv with padding ``pad``, relative to the output pixel."""
    return {(dy, dx) for dy in range(-pad, k - pad) for dx in range(-pad, k - pad)}


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
        """Conv weight (Cout, Cin/g, k, k) and bias with the eval-mode BN folded in."""
        conv, bn = branch.conv, branch.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv.weight * scale[:, None, None, None], shift

    def _use_matmuls(self, x: torch.Tensor) -> bool:
        """Unfold + GEMM only for export, and only where streaming the conv weights is the cost:
        at least 4M conv weights (16 MB), and an unfolded input no bigger than a quarter of them.
        Elsewhere ONNX Runtime's own Conv is as fast or faster (and in eager PyTorch's conv is)."""
        if self.training or self.convs[0].bn.running_var is None:
            return False  # BN needs batch statistics
        if not torch.onnx.is_in_onnx_export():
            return False
        conv = self.convs[0].conv
        b, _, h, w = x.shape
        weights = sum(branch.conv.weight.numel() for branch in self.convs)
        # unfolded / weight elements = B * H * W * groups / Cout for every branch
        return weights >= 1 << 22 and 4 * b * h * w * conv.groups <= conv.out_channels

    def _branches_as_matmuls(self, x: torch.Tensor) -> Tuple[torch.Tensor, Sequence[int], int, int]:
        """All branches as a few matrix products over groups of kernel taps.

        The kernels' tap sets are nested, so with the branches ordered widest first every tap is
        used by a prefix of them. Taps are grouped by that prefix and by the band of output pixels
        they can reach without reading padding: a row band for the top/bottom edge taps of a ring
        (shared dy), a column band for its left/right edge taps (shared dx). Each group is unfolded
        for its band only (one Gather), multiplied by the stacked weights of its branches, and
        zero-padded back to the full (branches x channels, Ho, Wo) output; the groups are summed.
        """
        b, c, h, w = x.shape
        convs = [branch.conv for branch in self.convs]
        g = convs[0].groups
        cg, co = c // g, convs[0].out_channels // g  # per group
        k = len(convs)
        order = sorted(range(k), key=lambda i: -convs[i].kernel_size[0])
        k0, p0 = convs[order[0]].kernel_size[0], convs[order[0]].padding[0]
        ho, wo = h + 2 * p0 - k0 + 1, w + 2 * p0 - k0 + 1
        folded = [self._folded(self.convs[i]) for i in order]
        tap_sets = [_taps(convs[i].kernel_size[0], convs[i].padding[0]) for i in order]
        groups = {}  # (number of branches using the taps, band kind, dy or dx) -> taps
        for dy, dx in sorted(tap_sets[0]):
            n = sum((dy, dx) in taps for taps in tap_sets)
            key = (n, "row", dy) if abs(dy) >= abs(dx) else (n, "col", dx)
            groups.setdefault(key, []).append((dy, dx))

        xg = x.reshape(b, g, cg, h * w)  # (B, g, C/g, HW)
        # channels last plus one zero row: index h*w reads zeros, i.e. the conv padding
        xz = F.pad(xg.transpose(2, 3), (0, 0, 0, 1))  # (B, g, HW + 1, C/g)
        parts = []
        for (n, band, d), taps in sorted(groups.items()):
            ys, xs = range(ho), range(wo)
            if band == "row":
                ys = range(max(0, -d), min(ho, h - d))
            else:
                xs = range(max(0, -d), min(wo, w - d))
            if not ys or not xs:
                continue  # these taps only ever read padding
            weight = []  # branches 0..n-1 at these taps, tap-major like the unfold
            for (wt, _), i in zip(folded[:n], order[:n]):
                kk, pp = convs[i].kernel_size[0], convs[i].padding[0]
                sel = torch.tensor([(ty + pp) * kk + tx + pp for ty, tx in taps], device=x.device)
                wt = wt.flatten(2)[:, :, sel].transpose(1, 2)  # (Cout, taps, C/g)
                weight.append(wt.reshape(g, co, -1))
            weight = torch.cat(weight, dim=1)  # (g, n * Cout/g, taps * C/g)
            if taps == [(0, 0)] and (len(ys), len(xs), ho, wo) == (h, w, h, w):
                y = torch.matmul(weight, xg)  # centre tap over the whole map: no unfold needed
            else:
                idx = _tap_index(h, w, ys, xs, taps, x.device)  # (Ny * Nx, taps)
                cols = xz[:, :, idx].reshape(b, g, idx.shape[0], -1)  # (B, g, Ny*Nx, taps*C/g)
                y = torch.matmul(weight, cols.transpose(2, 3))  # (B, g, n * Cout/g, Ny*Nx)
            y = y.reshape(b, g, n * co, len(ys), len(xs))
            pad = (xs[0], wo - xs[-1] - 1, ys[0], ho - ys[-1] - 1, 0, (k - n) * co)
            parts.append(F.pad(y, pad) if any(pad) else y)  # (B, g, K * Cout/g, Ho, Wo)
        acc = parts[0]
        for part in parts[1:]:
            acc = acc + part
        shift = torch.cat([sh for _, sh in folded]).reshape(k, g, co).transpose(0, 1)  # (g, K, C/g)
        feats = torch.relu(acc + shift.reshape(g, k * co, 1, 1))  # (B, g, K * Cout/g, Ho, Wo)
        if g > 1:  # rows are (group, branch, channel): make them (branch, channel)
            feats = feats.reshape(b, g, k, co, ho * wo).transpose(1, 2)
        return feats.reshape(b, k * co * g, ho * wo), order, ho, wo

    def _branches_as_convs(self, x: torch.Tensor) -> Tuple[torch.Tensor, Sequence[int], int, int]:
        feats = [conv(x) for conv in self.convs]
        ho, wo = feats[0].shape[2:]
        return torch.cat(feats, dim=1).flatten(2), range(len(feats)), ho, wo  # (B, K * C, HoWo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        k = len(self.convs)
        if self._use_matmuls(x):
            feats, order, ho, wo = self._branches_as_matmuls(x)
        else:
            feats, order, ho, wo = self._branches_as_convs(x)
        s = feats.mean(dim=2).reshape(b, k, c).sum(dim=1)  # pooled sum of branches: (B, C)
        z = self.fc(s)  # (B, d)
        # all K branch heads (in the order of feats) as one linear layer: (B, d) -> (B, K * C)
        weight = torch.cat([self.fcs[i].weight for i in order], dim=0)
        bias = torch.cat([self.fcs[i].bias for i in order], dim=0)
        logits = F.linear(z, weight, bias).reshape(b, k, c, 1)
        attn = torch.softmax(logits, dim=1)  # across branches
        out = (feats.reshape(b, k, c, -1) * attn).sum(dim=1)  # (B, K, C, HoWo) -> (B, C, HoWo)
        return out.reshape(b, c, ho, wo)
