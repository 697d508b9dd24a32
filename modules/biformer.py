"""BiFormer: Bi-Level Routing Attention.

Zhu et al., CVPR 2023, https://arxiv.org/abs/2303.08810

The NHWC map is cut into ``n_win x n_win`` windows. Window-level routing: the mean query
of each window is scored against the mean key of every window and the ``topk`` best are
kept. Token-level attention: each query pixel attends to all key/value pixels of its
window's ``topk`` routed windows. A depth-wise conv on the values (LePE) is added and
the result is projected by ``wo``.
Same class names, keywords and ``state_dict`` keys as rayleizhu/BiFormer's
``ops/bra_legacy.py`` (``TopkRouting``, ``KVGather``, ``QKVLinear``,
``BiLevelRoutingAttention``).

Differences from the reference, all numerically neutral:
- No einops. Windows are cut with one reshape/transpose of the (small) input. q, k and v
  are projected per head by one broadcast matmul each (bias carried by an all-ones input
  column, attention scale folded into the q weights), so they come out directly in
  (N, heads, windows, pixels, c) layout with no transpose of the projections.
- The routed key/value windows are fetched with ``Gather`` (index_select) over the
  flattened (N * heads * windows) axis, with row indices built from the ``TopK`` output,
  instead of ``torch.gather`` on a ``topk``-times expanded view with a 5-D expanded index
  (a ``GatherElements`` with an index as large as its output). The gathered block is
  already in the (windows, topk*pixels, c) layout the attention matmuls use.
- The attention (QK matmul, softmax, AV matmul) runs in a few chunks of query windows
  (``_CHUNK_SCORES``), so a chunk's score and probability blocks stay in cache between
  the three ops instead of streaming all scores (12.8 MB at the defaults) through memory
  twice; one chunk for small inputs.
- Heads are merged back into the image (for the output and for the LePE input) by a row
  ``Gather`` with a constant index instead of a 7-D transpose: ONNX Runtime runs that
  Gather on all threads and the Transpose on one.
- The window means of q and k are taken as ``mean(x) @ W + b`` (the projection is affine,
  so this equals the mean of the projections) instead of projecting every pixel first.
- Pooling of keys/values (``kv_downsample_mode``) is done on the per-head window layout
  with reshapes and reductions (adaptive pools with uneven bins by static slicing).
- ``side_dwconv=0`` uses ``nn.Identity`` in place of the reference's zero lambda (no
  parameters either way) and skips the zero add.
``TopK`` has a constant ``k`` and is sorted, as TensorRT requires.

Speed (ONNX Runtime CPU, 2 threads, registry defaults: 314 MFLOP). This module runs at about
50% of the measured matmul peak (~450 GFLOP/s), below the zoo's 60% goal, and cannot reach
it with ONNX Runtime's kernels: 60% means 1.16 ms, while its unavoidable kernels, each timed
alone at their best, take about that already: the softmax over 196 x 64 x 256 scores 0.34 ms
(no counted FLOPs), the head-dim-16 QK and AV batched matmuls 0.28 + 0.29 ms (~80% of
peak), and the q/k/v and output projections as single GEMMs 0.16 + 0.06 ms. That leaves
nothing for windowing, routing, gathers and LePE (about 0.25 ms together).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_module


class TopkRouting(nn.Module):
    """Window-to-window routing: scores of window queries against window keys, top-k kept."""

    def __init__(
        self,
        qk_dim: int,
        topk: int = 4,
        qk_scale: float | None = None,
        param_routing: bool = False,
        diff_routing: bool = False,
    ) -> None:
        super().__init__()
        self.topk = topk
        self.qk_dim = qk_dim
        self.scale = qk_scale or qk_dim**-0.5
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()
        self.routing_act = nn.Softmax(dim=-1)

    def forward(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        if not self.diff_routing:
            query, key = query.detach(), key.detach()
        logit = (self.emb(query) * self.scale) @ self.emb(key).transpose(-2, -1)  # (n, p^2, p^2)
        topk_logit, topk_index = torch.topk(logit, k=self.topk, dim=-1, sorted=True)  # (n, p^2, k)
        return self.routing_act(topk_logit), topk_index


class KVGather(nn.Module):
    """Fetches the routed key/value windows; a single row Gather over a flattened window axis."""

    def __init__(self, mul_weight: str = "none") -> None:
        super().__init__()
        assert mul_weight in ["none", "soft", "hard"], (
            f"mul_weight must be none, soft or hard, not {mul_weight!r}"
        )
        self.mul_weight = mul_weight

    def forward(self, r_idx: Tensor, r_weight: Tensor, kv: Tensor) -> Tensor:
        """r_idx, r_weight: (n, p^2, topk); kv: (n, G, p^2, w^2, c) with G groups (heads)
        -> (n, G, p^2, topk, w^2, c): for every query window, its topk routed windows."""
        n, g, p2, w2, c = kv.shape
        topk = r_idx.shape[-1]
        base = (
            torch.arange(n * g, device=kv.device).reshape(n, g, 1, 1) * p2
        )  # row offset of (n, g)
        rows = (r_idx.unsqueeze(1) + base).reshape(-1)  # (n*g*p^2*topk,)
        sel = kv.reshape(n * g * p2, w2 * c).index_select(0, rows).reshape(n, g, p2, topk, w2, c)
        if self.mul_weight == "soft":
            sel = r_weight.reshape(n, 1, p2, topk, 1, 1) * sel
        elif self.mul_weight == "hard":
            raise NotImplementedError("differentiable hard routing TBA")
        return sel


class QKVLinear(nn.Module):
    """Holds the fused q/k/v projection (``qkv.weight`` rows: q | k | v)."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, kv = self.qkv(x).split([self.qk_dim, self.qk_dim + self.dim], dim=-1)
        return q, kv


def _pool_windows(t: Tensor, mode: str, out_hw: tuple[int, int], kernel: int) -> Tensor:
    """Pool the pixels of every window. t: (..., h, w, c) -> (..., h', w', c).

    ``out_hw`` given (adaptive pools): PyTorch's adaptive bins; else floor-mode pooling
    with kernel = stride = ``kernel``.
    """
    reduce = (lambda z, d: z.amax(dim=d)) if "max" in mode else (lambda z, d: z.mean(dim=d))
    h, w = t.shape[-3], t.shape[-2]
    if mode.startswith("ada"):
        oh, ow = out_hw
        if h % oh == 0 and w % ow == 0:
            kernel_h, kernel_w = h // oh, w // ow
        else:  # uneven adaptive bins: [floor(i*h/o), ceil((i+1)*h/o)) by static slicing
            # (ceil written with non-negative operands: the exporter's integer division truncates)
            rows = [
                reduce(t[..., (i * h) // oh : ((i + 1) * h + oh - 1) // oh, :, :], -3)
                for i in range(oh)
            ]
            t = torch.stack(rows, dim=-3)  # (..., oh, w, c)
            cols = [
                reduce(t[..., (j * w) // ow : ((j + 1) * w + ow - 1) // ow, :], -2)
                for j in range(ow)
            ]
            return torch.stack(cols, dim=-2)  # (..., oh, ow, c)
    else:
        kernel_h = kernel_w = kernel
        oh, ow = h // kernel, w // kernel
        t = t[..., : oh * kernel, : ow * kernel, :]
    lead = t.shape[:-3]
    t = t.reshape(*lead, oh, kernel_h, ow, kernel_w, t.shape[-1])
    return reduce(reduce(t, -2), -3)  # reduce kernel_w, then kernel_h


# Attention runs in chunks of about this many score elements (4 MB in fp32), so that one
# chunk's scores and probabilities stay in cache (4 chunks at the registry defaults).
_CHUNK_SCORES = 1 << 20


def _window_multiple(kw: dict) -> int:
    """H and W hold whole windows; with adaptive key/value pooling, windows of whole bins."""
    ada = kw.get("kv_downsample_mode", "identity").startswith("ada")
    return kw.get("n_win", 7) * (kw.get("kv_per_win", 4) if ada else 1)


@register_module(
    "biformer",
    kwargs=dict(dim=64, num_heads=4, n_win=7, topk=4),
    shapes=[(1, 56, 56, 64)],
    paper="BiFormer: Vision Transformer with Bi-Level Routing Attention",
    url="https://arxiv.org/abs/2303.08810",
    dynamic=("batch", "height", "width"),
    spatial_multiple=_window_multiple,
    layout="NHWC",
)
class BiLevelRoutingAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        n_win: int = 7,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        kv_per_win: int = 4,
        kv_downsample_ratio: int = 4,
        kv_downsample_kernel: int | None = None,
        kv_downsample_mode: str = "identity",
        topk: int = 4,
        param_attention: str = "qkvo",
        param_routing: bool = False,
        diff_routing: bool = False,
        soft_routing: bool = False,
        side_dwconv: int = 3,
        auto_pad: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.qk_dim = qk_dim or dim
        assert self.qk_dim % num_heads == 0 and self.dim % num_heads == 0, (
            "qk_dim and dim must be divisible by num_heads!"
        )
        self.scale = qk_scale or self.qk_dim**-0.5

        # LePE (side depth-wise conv on v); side_dwconv == 0 means no LePE
        self.side_dwconv = side_dwconv
        self.lepe = (
            nn.Conv2d(
                dim, dim, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2, groups=dim
            )
            if side_dwconv > 0
            else nn.Identity()
        )

        self.topk = topk
        self.param_routing = param_routing
        self.diff_routing = diff_routing
        self.soft_routing = soft_routing
        assert not (param_routing and not diff_routing), "param_routing needs diff_routing"
        self.router = TopkRouting(
            qk_dim=self.qk_dim,
            qk_scale=self.scale,
            topk=topk,
            diff_routing=diff_routing,
            param_routing=param_routing,
        )
        mul_weight = "soft" if soft_routing else ("hard" if diff_routing else "none")
        self.kv_gather = KVGather(mul_weight=mul_weight)

        self.param_attention = param_attention
        if param_attention == "qkvo":
            self.qkv = QKVLinear(self.dim, self.qk_dim)
            self.wo = nn.Linear(dim, dim)
        elif param_attention == "qkv":
            self.qkv = QKVLinear(self.dim, self.qk_dim)
            self.wo = nn.Identity()
        else:
            raise ValueError(f"param_attention mode {param_attention} is not surpported!")

        self.kv_downsample_mode = kv_downsample_mode
        self.kv_per_win = kv_per_win
        self.kv_downsample_ratio = kv_downsample_ratio
        self.kv_downsample_kenel = kv_downsample_kernel
        if kv_downsample_mode in ("ada_avgpool", "ada_maxpool"):
            assert kv_per_win is not None, f"{kv_downsample_mode} needs kv_per_win"
        elif kv_downsample_mode in ("maxpool", "avgpool"):
            assert kv_downsample_ratio is not None, (
                f"{kv_downsample_mode} needs kv_downsample_ratio"
            )
        elif kv_downsample_mode in ("fracpool", "conv"):
            raise NotImplementedError(f"{kv_downsample_mode} policy is not implemented yet!")
        elif kv_downsample_mode != "identity":
            raise ValueError(f"kv_down_sample_mode {kv_downsample_mode} is not surpported!")

        self.attn_act = nn.Softmax(dim=-1)
        self.auto_pad = auto_pad

    def _kv_down(self, t: Tensor) -> Tensor:
        """(..., h, w, c) window pixels -> pooled pixels, as the reference's kv_down."""
        mode = self.kv_downsample_mode
        if mode == "identity" or (mode in ("maxpool", "avgpool") and self.kv_downsample_ratio <= 1):
            return t
        if mode.startswith("ada"):
            return _pool_windows(t, mode, (self.kv_per_win, self.kv_per_win), 0)
        return _pool_windows(t, mode, (0, 0), self.kv_downsample_ratio)

    def forward(self, x: Tensor, ret_attn_mask: bool = False):
        N, H_in, W_in, C = x.shape
        nw = self.n_win
        pad_r = pad_b = 0
        if self.auto_pad:  # zero-pad bottom/right to whole windows (cropped again at the end)
            pad_r = (nw - W_in % nw) % nw
            pad_b = (nw - H_in % nw) % nw
            if pad_r or pad_b:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        else:
            assert H_in % nw == 0 and W_in % nw == 0, (
                f"height and width ({H_in}x{W_in}) must be multiples of n_win={nw}, or pass auto_pad=True"
            )
        H, W = x.shape[1], x.shape[2]
        hs, ws = H // nw, W // nw
        p2, w2 = nw * nw, hs * ws
        m, qk, dv = self.num_heads, self.qk_dim, self.dim
        cq, cv = qk // m, dv // m
        B, tk = N * m * p2, self.topk  # attention batches: (n, head, window)

        # windows: (N, H, W, C) -> (N, 1, p^2 * w^2, C), rows ordered (win_row, win_col, y, x)
        xw = x.reshape(N, nw, hs, nw, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(N, 1, p2 * w2, C)
        xw1 = torch.cat([xw, torch.ones_like(xw[..., :1])], dim=-1)  # (N, 1, L, C + 1)

        # q, k, v per head straight into (N, heads, L, c) by one broadcast matmul each; the bias
        # rides on the all-ones input column and the attention scale is folded into q
        w_qkv, b_qkv = self.qkv.qkv.weight, self.qkv.qkv.bias
        if b_qkv is None:
            b_qkv = torch.zeros_like(w_qkv[:, 0])
        w_ext = torch.cat([w_qkv, b_qkv.unsqueeze(1)], dim=1)  # (2*qk + dim, C + 1)
        q = xw1 @ (w_ext[:qk] * self.scale).reshape(m, cq, C + 1).transpose(1, 2)  # (N, m, L, cq)
        k = xw1 @ w_ext[qk : 2 * qk].reshape(m, cq, C + 1).transpose(1, 2)  # (N, m, L, cq)
        v = xw1 @ w_ext[2 * qk :].reshape(m, cv, C + 1).transpose(1, 2)  # (N, m, L, cv)

        # routing on window means; the projection is affine, so mean(x) W + b = mean(x W + b)
        x_mean = xw.reshape(N, p2, w2, C).mean(dim=2)  # (N, p^2, C)
        qk_win = F.linear(x_mean, w_qkv[: 2 * qk], b_qkv[: 2 * qk])  # (N, p^2, 2*qk)
        r_weight, r_idx = self.router(qk_win[..., :qk], qk_win[..., qk:])  # (N, p^2, topk) each

        # key/value windows as rows of a (N*m*p^2, pixels*c) table; routed rows are gathered
        k_pool = self._kv_down(k.reshape(N, m, p2, hs, ws, cq))
        v_pool = self._kv_down(v.reshape(N, m, p2, hs, ws, cv))
        kw2 = k_pool.shape[3] * k_pool.shape[4]
        k_rows, v_rows = k_pool.reshape(B, kw2 * cq), v_pool.reshape(B, kw2 * cv)
        base = torch.arange(N * m, device=x.device).reshape(N, m, 1, 1) * p2  # row of (n, head, 0)
        rows = (r_idx.unsqueeze(1) + base).reshape(B * tk)  # (n, head, window, topk)
        mul = self.kv_gather.mul_weight
        if mul == "hard":
            raise NotImplementedError("differentiable hard routing TBA")

        # attention in a few chunks of query windows: a chunk's scores stay in cache from the QK
        # matmul through the Softmax to the AV matmul (all scores at once spill to memory).
        # Chunks split the (head, window) axis, which no input size changes; their count is a
        # speed choice made at the export size (int(): the tracer hands sizes out as tensors)
        hp = m * p2
        n_chunks = min(hp, -(-int(B * w2 * tk * kw2) // _CHUNK_SCORES))
        sizes = [hp // n_chunks + (1 if i < hp % n_chunks else 0) for i in range(n_chunks)]
        q_chunks = q.reshape(N, hp, w2, cq).split(sizes, dim=1)
        row_chunks = rows.reshape(N, hp * tk).split([sz * tk for sz in sizes], dim=1)
        if mul == "soft":  # routing weights per gathered row
            w_rows = r_weight.unsqueeze(1).expand(N, m, p2, tk).reshape(N, hp * tk, 1)
            w_chunks = w_rows.split([sz * tk for sz in sizes], dim=1)
        outs, attns = [], []
        for i, sz in enumerate(sizes):
            k_sel = k_rows[row_chunks[i]]  # one Gather: (N, sz*topk, kw^2*cq)
            v_sel = v_rows[row_chunks[i]]
            if mul == "soft":
                k_sel, v_sel = k_sel * w_chunks[i], v_sel * w_chunks[i]
            k_sel = k_sel.reshape(N, sz, tk * kw2, cq).transpose(-2, -1)
            attn = self.attn_act(q_chunks[i] @ k_sel)  # (N, sz, w^2, topk*kw^2)
            outs.append(attn @ v_sel.reshape(N, sz, tk * kw2, cv))  # (N, sz, w^2, cv)
            attns.append(attn)
        out = torch.cat(outs, dim=1) if n_chunks > 1 else outs[0]  # (N, m*p^2, w^2, cv)

        # back to the image, heads into channels: (N, m, j, i, y, x, c) -> (N, j, y, i, x, m, c)
        out = self._to_image(out, N, m, nw, hs, ws, cv)
        if self.side_dwconv > 0:
            v_img = self._to_image(v, N, m, nw, hs, ws, cv)
            out = out + self.lepe(v_img.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = self.wo(out)
        if pad_r or pad_b:
            out = out[:, :H_in, :W_in, :]
        if ret_attn_mask:
            # reference layout: (N*p^2, m, w^2, topk*kw^2)
            attn = torch.cat(attns, dim=1) if n_chunks > 1 else attns[0]
            attn = attn.reshape(N, m, p2, w2, -1).transpose(1, 2).reshape(N * p2, m, w2, -1)
            return out, r_weight, r_idx, attn
        return out

    @staticmethod
    def _to_image(t: Tensor, N: int, m: int, nw: int, hs: int, ws: int, c: int) -> Tensor:
        """(N, m, windows, window pixels, c) rows -> (N, H, W, m*c) image.

        A Gather of c-wide rows with a constant index rather than a 7-D Transpose: the same
        bytes moved, but ONNX Runtime runs Gather on all threads and this Transpose on one.
        The index is per sample, so it does not depend on the batch size.
        """
        idx = torch.arange(m * nw * nw * hs * ws, device=t.device).reshape(m, nw, nw, hs, ws)
        idx = idx.permute(1, 3, 2, 4, 0).reshape(-1)  # (j, y, i, x, m)
        return t.reshape(N, -1, c).index_select(1, idx).reshape(N, nw * hs, nw * ws, m * c)
