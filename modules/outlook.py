"""VOLO: Outlook Attention.

Yuan et al., TPAMI 2022, https://arxiv.org/abs/2106.13112

Each output location predicts, from its own feature, a (k*k) x (k*k) attention map over
its k x k neighbourhood; the neighbourhood values are mixed by that map and the mixed
windows are summed back onto the feature map (unfold -> matmul -> fold).
Same class name, keywords and ``state_dict`` keys as External-Attention-pytorch's
``OutlookAttention.py``.

Differences from the reference (same function, different evaluation order):
- No ``nn.Unfold``/``F.fold``. ``F.fold`` exports to ``Col2Im``, which TensorRT rejects
  (and opset 17 cannot express), and the per-location (k*k x k*k) @ (k*k x C) matmuls on a
  k*k times expanded value tensor are tiny GEMMs that run slowly in PyTorch and ONNX
  Runtime alike. Written out, unfold -> matmul -> fold is ``y[q] = sum_d A[q, d] v[q + d]``
  over the (2k-1)^2 relative offsets ``d``, with ``A[q, d]`` the sum of the attention
  weights ``a[r, i, j]`` whose window slot ``i`` of location ``r`` lands on ``q`` and whose
  read slot ``j`` sits at ``q + d``. ``A`` is one ``ConvTranspose`` (stride, padding as the
  fold) of ``a`` with a constant 0/1 kernel (a non-persistent buffer, not in
  ``state_dict``). The sum over ``d`` is one batched matmul per output row: a banded
  (W x (2k-1)*Wp) matrix made from ``A`` by a pad/reshape skew, times the 2k-1 zero-padded
  source rows around that row, fetched with one ``Gather``.
- With one head the weights ``A`` are shared by all channels and commute with ``v_pj``,
  so the input itself is aggregated and ``proj(v_pj(.))`` is applied as one linear map with
  weight ``proj.weight @ v_pj.weight`` (a constant in the exported graph), when there are
  more pixels than channels, where it saves work; the choice depends on static shapes only. A
  ``v_pj`` bias is carried by an extra all-ones channel, so zero padding acts as in the reference.
- The reference builds ``nn.Unfold(kernel_size, padding, stride)`` positionally, i.e.
  with dilation=padding and padding=stride. Both readings agree for kernel_size=3,
  padding=1, stride=1; otherwise the reference fails on all but a few tiny map sizes
  (e.g. kernel 5 / padding 2 / stride 2 only at 8x8 and 9x9). Other settings here follow
  VOLO: unfold and fold both with the given padding and stride.
- The stride-1 ``AvgPool2d`` (an identity) is skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_module


@register_module(
    "outlook",
    kwargs=dict(dim=512),
    shapes=[(1, 28, 28, 512)],
    paper="VOLO: Vision Outlooker for Visual Recognition",
    url="https://arxiv.org/abs/2106.13112",
    dynamic=("batch", "height", "width"),
    spatial_multiple=lambda kw: kw.get("stride", 1),
    layout="NHWC",
)
class OutlookAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 1,
        qkv_bias: bool = False,
        attn_drop: float = 0.1,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.scale = self.head_dim ** (-0.5)

        self.v_pj = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn = nn.Linear(dim, kernel_size**4 * num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(attn_drop)
        self.pool = nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True)

        # Constant 0/1 ConvTranspose kernel that turns window attention into offset weights:
        # input channel (slot (ki, kj), read slot (li, lj)) feeds output channel
        # (dw, dh) = (lj - kj + k - 1, li - ki + k - 1) through tap (ki, kj). Not in state_dict.
        k, e = kernel_size, kernel_size - 1
        K2 = 2 * k - 1
        place = torch.zeros(k, k, k, k, K2, K2, k, k)  # (ki, kj, li, lj, dw, dh, u, v)
        for ki in range(k):
            for kj in range(k):
                for li in range(k):
                    for lj in range(k):
                        place[ki, kj, li, lj, lj - kj + e, li - ki + e, ki, kj] = 1.0
        place = place.reshape(k**4, K2 * K2, k, k).repeat(num_heads, 1, 1, 1)
        self._place: torch.Tensor
        self.register_buffer("_place", place, persistent=False)

    def _offset_weights(self, a: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, h, w, nh, k*k, k*k) window attention -> (B, nh, H, W, (2k-1)^2) offset weights.

        A[q, d] = sum of a[r, i, j] over slots i, j and locations r with r*s + i - p = q and
        j - i = d: exactly a transposed conv (stride s, padding p) with a 0/1 kernel.
        Offsets d are ordered (dw, dh).
        """
        B, h, w, nh = a.shape[:4]
        k, p, s = self.kernel_size, self.padding, self.stride
        a = a.reshape(B, h, w, nh * k**4).permute(0, 3, 1, 2)  # (B, nh*k^4, h, w)
        # the same at every H, W that is a multiple of the stride: a static int is right for all
        out_pad = (int(H - ((h - 1) * s - 2 * p + k)), int(W - ((w - 1) * s - 2 * p + k)))
        A = F.conv_transpose2d(
            a, self._place, stride=s, padding=p, output_padding=out_pad, groups=nh
        )
        return A.reshape(B, nh, -1, H, W).permute(0, 1, 3, 4, 2)  # (B, nh, H, W, K2*K2)

    def _aggregate(self, src: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """y[q] = sum_d A[q, d] * src[q + d] (zero outside the map) as one batched matmul.

        src: (B, nh, H, W, c), A: (B, nh, H, W, (2k-1)^2) -> (B, nh, H, W, c).
        Per output row, the 2k-1 zero-padded source rows around it are laid out as a
        (Wp * (2k-1), c) matrix ordered (column, row offset); output pixel (qh, qw) needs
        entries [qw * (2k-1), (qw + 2k - 1) * (2k-1)) of it, which are exactly its offset
        weights in (dw, dh) order. So the banded (W, Wp * (2k-1)) matrix is A shifted by
        2k-1 per pixel: pad each pixel's weights by Wp*(2k-1) - (2k-1)^2 + (2k-1) zeros,
        flatten the row, drop the tail and re-view (the usual skew trick).
        """
        B, nh, H, W, c = src.shape
        e = self.kernel_size - 1
        K2 = 2 * e + 1
        Wp = W + 2 * e
        L = Wp * K2
        M = F.pad(A, (0, L + K2 - K2 * K2)).reshape(B, nh, H, W * (L + K2))
        M = M[..., : W * L].reshape(B, nh, H, W, L)  # (B, nh, H, W, Wp*K2)
        # rows[qh, (col, dh)] = src[qh + dh - e, col - e], or a zero row outside the map: one Gather
        dev = src.device
        r = (
            torch.arange(H, device=dev).reshape(H, 1, 1)
            + torch.arange(K2, device=dev).reshape(1, 1, K2)
            - e
        )
        col = torch.arange(Wp, device=dev).reshape(1, Wp, 1) - e
        idx = torch.where(
            (r >= 0) & (r < H) & (col >= 0) & (col < W), r * W + col, H * W
        )  # (H, Wp, K2)
        src = F.pad(
            src.reshape(B, nh, H * W, c), (0, 0, 0, 1)
        )  # (B, nh, H*W + 1, c), last row zero
        rows = src.index_select(2, idx.reshape(-1)).reshape(B, nh, H, L, c)  # (B, nh, H, Wp*K2, c)
        return M @ rows  # (B, nh, H, W, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        k, s, nh = self.kernel_size, self.stride, self.num_heads
        h, w = (H + s - 1) // s, (W + s - 1) // s  # ceil-mode pooled size

        a = x if s == 1 else self.pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, h, w, C)
        a = self.attn(a).reshape(B, h, w, nh, k * k, k * k)
        a = self.attn_drop((a * self.scale).softmax(dim=-1))
        A = self._offset_weights(a, H, W)  # (B, nh, H, W, (2k-1)^2)

        merge = nh == 1 and B * H * W >= C  # merging pays when there are more pixels than channels
        if not merge:
            v = (
                self.v_pj(x).reshape(B, H, W, nh, C // nh).permute(0, 3, 1, 2, 4)
            )  # (B, nh, H, W, hd)
            y = self._aggregate(v, A).permute(0, 2, 3, 1, 4).reshape(B, H, W, C)
            return self.proj_drop(self.proj(y))
        # one head: aggregate x itself, then apply proj(v_pj(.)) as a single linear map
        weight = self.proj.weight @ self.v_pj.weight  # (C, C)
        src = x
        if self.v_pj.bias is not None:  # the bias reaches q once per in-map tap: carry that mass
            src = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # (B, H, W, C + 1)
            weight = torch.cat([weight, (self.proj.weight @ self.v_pj.bias).unsqueeze(1)], dim=1)
        y = self._aggregate(src.unsqueeze(1), A).squeeze(1)  # (B, H, W, C[+1])
        return self.proj_drop(F.linear(y, weight, self.proj.bias))
