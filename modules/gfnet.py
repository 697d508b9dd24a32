"""GFNet: the global filter layer.

Rao et al., "Global Filter Networks for Image Classification", NeurIPS 2021,
https://arxiv.org/abs/2107.00645

A token map is taken to the 2-D Fourier domain (``rfft2``, orthonormal), multiplied by a
learned complex filter per frequency and channel, and taken back (``irfft2``). Same class
name, constructor keywords, forward signature and ``state_dict`` (``complex_weight``) as
External-Attention-pytorch's ``gfnet.py``.

What differs from the reference, and why: ``torch.fft`` exports to ONNX ``DFT``, which
TensorRT rejects and ONNX Runtime runs slowly. The transforms are written instead as real
matrix products with DFT bases precomputed in float64 at construction (non-persistent
buffers, so not in the ``state_dict``):

1. ``rfft`` along the width: ``(2w, b) @ x`` gives real and imaginary parts stacked.
2. complex DFT along the height: one real ``(2h, 2h)`` matrix acting on (row, re|im) pairs.
3. filter and inverse DFT along the height in one product: with ``Y = (Wr + iWi) X`` and the
   inverse ``G`` complex-linear, ``G Y = G (Wr X) + i G (Wi X)``; so the filter is a single
   broadcast multiply producing ``[Wr X; Wi X]``, and the inverse is the real ``(2h, 4h)``
   matrix ``[G, iG]`` (fewer, larger nodes than the elementwise complex product).
4. ``irfft`` along the width: ``(b, 2w)`` with the half-spectrum weights (bins 0 and, for
   even ``b``, ``b/2`` count once, the others twice; the sines vanish on those bins, which is
   exactly ``irfft`` dropping their imaginary parts).

Every step keeps the channel axis last, so the graph has four MatMuls, one Mul and
Reshapes, and no Transpose. The spatial width ``b`` of a ``w``-bin half spectrum is
``2w - 2`` or ``2w - 1``; bases for both are built, and the forward picks by ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._registry import register_module


def _width_bases(w: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real rfft / irfft matrices (orthonormal) along an axis of length ``b`` with ``w`` bins."""
    n = torch.arange(b, dtype=torch.float64)
    k = torch.arange(w, dtype=torch.float64)
    ang = 2.0 * math.pi * torch.outer(k, n) / b  # (w, b)
    cos, sin = torch.cos(ang), torch.sin(ang)
    scale = 1.0 / math.sqrt(b)
    fwd = torch.cat([cos, -sin], 0) * scale  # (2w, b): rows = (re|im, bin)
    # irfft counts the bins that have a mirror image twice (DC and Nyquist once).
    mult = torch.full((w, 1), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    if b % 2 == 0:
        mult[w - 1] = 1.0
    inv = (torch.cat([cos * mult, -sin * mult], 0) * scale).t()  # (b, 2w)
    return fwd.float(), inv.contiguous().float()


def _height_bases(h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex DFT along an axis of length ``h`` as real matrices.

    forward ``(2h, 2h)``: input rows (m, re|im) -> output rows (re|im, k).
    inverse ``(2h, 4h)``: input rows (s, re|im, k), where s = 0 holds ``Wr X`` and s = 1
    holds ``Wi X`` (the latter is multiplied by i), -> output rows (m, re|im).
    """
    m = torch.arange(h, dtype=torch.float64)
    ang = 2.0 * math.pi * torch.outer(m, m) / h
    cos, sin = torch.cos(ang) / math.sqrt(h), torch.sin(ang) / math.sqrt(h)
    fwd = torch.zeros(2, h, h, 2, dtype=torch.float64)  # [re|im out, k, m, re|im in]
    fwd[0, :, :, 0], fwd[0, :, :, 1] = cos, sin  # Re: xr cos + xi sin  (e^{-i theta})
    fwd[1, :, :, 0], fwd[1, :, :, 1] = -sin, cos  # Im: -xr sin + xi cos
    inv = torch.zeros(h, 2, 2, 2, h, dtype=torch.float64)  # [m, re|im out, s, re|im in, k]
    inv[:, 0, 0, 0], inv[:, 0, 0, 1] = cos, -sin  # Re(G u) = ur cos - ui sin  (e^{+i theta})
    inv[:, 1, 0, 0], inv[:, 1, 0, 1] = sin, cos  # Im(G u) = ur sin + ui cos
    inv[:, 0, 1] = -inv[:, 1, 0]  # Re(i G u) = -Im(G u)
    inv[:, 1, 1] = inv[:, 0, 0]  # Im(i G u) = Re(G u)
    return fwd.reshape(2 * h, 2 * h).float(), inv.reshape(2 * h, 4 * h).float()


@register_module(
    "gfnet",
    kwargs=dict(dim=384, h=14, w=8),
    shapes=[(1, 196, 384)],
    paper="Global Filter Networks for Image Classification",
    url="https://arxiv.org/abs/2107.00645",
    fixed_because="its learned h x w filter is the spectrum of one token-map size",
)
class GlobalFilter(nn.Module):
    # DFT bases (non-persistent buffers, built in __init__)
    fwd_h: torch.Tensor
    inv_h: torch.Tensor
    fwd_w_even: torch.Tensor
    inv_w_even: torch.Tensor
    fwd_w_odd: torch.Tensor
    inv_w_odd: torch.Tensor

    def __init__(self, dim: int, h: int = 14, w: int = 8) -> None:
        super().__init__()
        self.complex_weight = nn.Parameter(torch.randn(h, w, dim, 2, dtype=torch.float32) * 0.02)
        self.w = w
        self.h = h
        fwd_h, inv_h = _height_bases(h)
        self.register_buffer("fwd_h", fwd_h, persistent=False)
        self.register_buffer("inv_h", inv_h, persistent=False)
        # A w-bin half spectrum comes from an even (2w - 2) or odd (2w - 1) width.
        for parity, b in (("even", 2 * w - 2), ("odd", 2 * w - 1)):
            fwd_w, inv_w = _width_bases(w, b) if b > 0 else (torch.zeros(0), torch.zeros(0))
            self.register_buffer(f"fwd_w_{parity}", fwd_w, persistent=False)
            self.register_buffer(f"inv_w_{parity}", inv_w, persistent=False)

    def forward(self, x: torch.Tensor, spatial_size: Sequence[int] | None = None) -> torch.Tensor:
        B, N, C = x.shape
        if spatial_size is None:
            a = b = int(math.sqrt(N))
        else:
            a, b = spatial_size
        if a != self.h or b // 2 + 1 != self.w:
            raise ValueError(
                f"a {a}x{b} token map has a {a}x{b // 2 + 1} half spectrum, "
                f"but the filter is {self.h}x{self.w}"
            )
        fwd_w = self.fwd_w_even if b % 2 == 0 else self.fwd_w_odd
        inv_w = self.inv_w_even if b % 2 == 0 else self.inv_w_odd
        w = self.w

        x = x.view(B, a, b, C).to(self.fwd_h.dtype)  # the reference computes in float32
        z = torch.matmul(fwd_w, x)  # rfft along width: (B, a, b, C) -> (B, a, 2w, C)
        # DFT along height: (B, a, 2w, C) as (B, 2a, wC) -> (B, 2a, wC), rows (re|im, k)
        z = torch.matmul(self.fwd_h, z.reshape(B, 2 * a, w * C))
        # [Wr; Wi] as (2, 1, h, w, C) against (B, 1, 2, a, w, C) -> (B, 2, 2, a, w, C)
        filt = self.complex_weight.permute(3, 0, 1, 2).unsqueeze(1).contiguous()
        z = z.view(B, 1, 2, a, w, C) * filt
        # inverse along height: (B, 4a, wC) -> (B, 2a, wC), rows (m, re|im)
        z = torch.matmul(self.inv_h, z.view(B, 4 * a, w * C))
        # irfft along width: (B, a, 2w, C) -> (B, a, b, C)
        z = torch.matmul(inv_w, z.view(B, a, 2 * w, C))
        return z.reshape(B, N, C)
