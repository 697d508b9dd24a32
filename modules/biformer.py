"""BiFormer: Bi-Level Routing Attention.

Zhu et al., CVPR 2023, https://arxiv.org/abs/2303.08810

The NHWC map is cut into ``n_win x n_win`` windows. Window-level routing: the mean query
of each window is scored against the mean key of every window and the ``topk`` best are
kept. Token-level attention: each query pixel attends to all key/value pixels of its
window's ``topk`` routed windows. A depth-wise conv on the values (LePE) is added and
the result is projected by ``wo``.
Same class names, keywords and ``state_dict`` keys as rayleizhu/BiFormer's
``ops/bra_legacy.py`` (``TopkRouting``, ``QKVLinear``, ``BiLevelRoutingAttention``; its
``KVGather`` holds no weights and is written inline here, and ``kv_downsample_kernel`` is
accepted and unused, as there).

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
  the three ops instead of streaming all scores through memory twice; one chunk for small
  inputs.
- Heads are merged back into the image (for the output and for the LePE input) by a row
  ``Gather`` with a constant index instead of a 7-D transpose: ONNX Runtime runs that
  Gather on all threads and the Transpose on one.
- The window means of q and k are taken as ``mean(x) @ W + b`` (the projection is affine,
  so this equals the mean of the projections) instead of projecting every pixel first.
- Pooling of keys/values (``kv_downsample_mode``) is done on the per-head window layout
  with reshapes and reductions (adaptive pools with uneven bins by static slicing).
- ``side_dwconv=0`` uses ``nn.Identity`` in place of the reference's zero lambda (no
  parameters either way) and skips the zero add.
``TopK`` has a constant ``k`` and is sorted, as TensorRT requires. Why it runs below 60% of
the matmul peak on ONNX Runtime: README, "Rewrites for speed".
"""

from __future__ import annotations

from typing import NamedTuple

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


class QKVLinear(nn.Module):
    """Holds the fused q/k/v projection (``qkv.weight`` rows: q | k | v) under the reference's
    key ``qkv.qkv``; the attention reads its weight and bias directly."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)


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


class _Grid(NamedTuple):
    """The window layout of one forward's input."""

    n: int  # samples
    c: int  # channels
    hs: int  # window height, pixels
    ws: int  # window width, pixels
    p2: int  # windows per sample, nw * nw
    w2: int  # pixels per window, hs * ws
    batches: int  # attention batches, samples * heads * windows


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
        kv_downsample_kernel: int | None = None,  # the reference's keyword; it never reads it
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
        self._init_routing(topk, param_routing, diff_routing, soft_routing)
        self._init_projections(param_attention)
        self._init_kv_downsample(kv_downsample_mode, kv_per_win, kv_downsample_ratio)
        self.attn_act = nn.Softmax(dim=-1)
        self.auto_pad = auto_pad

    def _init_routing(
        self, topk: int, param_routing: bool, diff_routing: bool, soft_routing: bool
    ) -> None:
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
        # How the routed key/value windows are weighted (the reference's KVGather(mul_weight)).
        self.mul_weight = "soft" if soft_routing else ("hard" if diff_routing else "none")

    def _init_projections(self, param_attention: str) -> None:
        self.param_attention = param_attention
        self.wo: nn.Module
        if param_attention == "qkvo":
            self.qkv = QKVLinear(self.dim, self.qk_dim)
            self.wo = nn.Linear(self.dim, self.dim)
        elif param_attention == "qkv":
            self.qkv = QKVLinear(self.dim, self.qk_dim)
            self.wo = nn.Identity()
        else:
            raise ValueError(f"param_attention mode {param_attention} is not surpported!")

    def _init_kv_downsample(self, mode: str, kv_per_win: int, kv_downsample_ratio: int) -> None:
        self.kv_downsample_mode = mode
        self.kv_per_win = kv_per_win
        self.kv_downsample_ratio = kv_downsample_ratio
        if mode in ("ada_avgpool", "ada_maxpool"):
            assert kv_per_win is not None, f"{mode} needs kv_per_win"
        elif mode in ("maxpool", "avgpool"):
            assert kv_downsample_ratio is not None, f"{mode} needs kv_downsample_ratio"
        elif mode in ("fracpool", "conv"):
            raise NotImplementedError(f"{mode} policy is not implemented yet!")
        elif mode != "identity":
            raise ValueError(f"kv_down_sample_mode {mode} is not surpported!")

    def _kv_down(self, t: Tensor) -> Tensor:
        """(..., h, w, c) window pixels -> pooled pixels, as the reference's kv_down."""
        mode = self.kv_downsample_mode
        if mode == "identity" or (mode in ("maxpool", "avgpool") and self.kv_downsample_ratio <= 1):
            return t
        if mode.startswith("ada"):
            return _pool_windows(t, mode, (self.kv_per_win, self.kv_per_win), 0)
        return _pool_windows(t, mode, (0, 0), self.kv_downsample_ratio)

    def forward(
        self, x: Tensor, ret_attn_mask: bool = False
    ) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
        N, H_in, W_in, C = x.shape
        nw = self.n_win
        x, pad_r, pad_b = self._pad_to_windows(x, H_in, W_in)
        H, W = x.shape[1], x.shape[2]
        hs, ws = H // nw, W // nw
        p2, w2 = nw * nw, hs * ws
        g = _Grid(N, C, hs, ws, p2, w2, N * self.num_heads * p2)

        # windows: (N, H, W, C) -> (N, 1, p^2 * w^2, C), rows ordered (win_row, win_col, y, x)
        xw = x.reshape(N, nw, hs, nw, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(N, 1, p2 * w2, C)
        q, k, v = self._project(xw, C)  # (N, m, L, c) each
        r_weight, r_idx = self._route(xw, g)  # (N, p^2, topk) each
        k_rows, v_rows, rows, kw2 = self._routed_rows(k, v, r_idx, g)
        out, attn = self._attend_in_chunks(q, k_rows, v_rows, rows, r_weight, kw2, g)

        # back to the image, heads into channels: (N, m, j, i, y, x, c) -> (N, j, y, i, x, m, c)
        m, cv = self.num_heads, self.dim // self.num_heads
        out = self._to_image(out, N, m, nw, hs, ws, cv)
        if self.side_dwconv > 0:
            v_img = self._to_image(v, N, m, nw, hs, ws, cv)
            out = out + self.lepe(v_img.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = self.wo(out)
        if pad_r or pad_b:
            out = out[:, :H_in, :W_in, :]
        if ret_attn_mask:
            # reference layout: (N*p^2, m, w^2, topk*kw^2)
            attn = attn.reshape(N, m, p2, w2, -1).transpose(1, 2).reshape(N * p2, m, w2, -1)
            return out, r_weight, r_idx, attn
        return out

    def _pad_to_windows(self, x: Tensor, H_in: int, W_in: int) -> tuple[Tensor, int, int]:
        """With ``auto_pad``, zero-pad bottom/right to whole windows (cropped again at the end);
        without, H and W must hold whole windows."""
        nw = self.n_win
        pad_r = pad_b = 0
        if self.auto_pad:
            pad_r = (nw - W_in % nw) % nw
            pad_b = (nw - H_in % nw) % nw
            if pad_r or pad_b:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        else:
            assert H_in % nw == 0 and W_in % nw == 0, (
                f"height and width ({H_in}x{W_in}) must be multiples of n_win={nw}, "
                "or pass auto_pad=True"
            )
        return x, pad_r, pad_b

    def _project(self, xw: Tensor, C: int) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v per head straight into (N, heads, L, c) by one broadcast matmul each; the
        bias rides on an all-ones input column and the attention scale is folded into q."""
        m, qk = self.num_heads, self.qk_dim
        cq, cv = qk // m, self.dim // m
        xw1 = torch.cat([xw, torch.ones_like(xw[..., :1])], dim=-1)  # (N, 1, L, C + 1)
        linear = self.qkv.qkv
        w_ext = torch.cat([linear.weight, linear.bias.unsqueeze(1)], dim=1)  # (2*qk + dim, C + 1)
        q = xw1 @ (w_ext[:qk] * self.scale).reshape(m, cq, C + 1).transpose(1, 2)  # (N, m, L, cq)
        k = xw1 @ w_ext[qk : 2 * qk].reshape(m, cq, C + 1).transpose(1, 2)  # (N, m, L, cq)
        v = xw1 @ w_ext[2 * qk :].reshape(m, cv, C + 1).transpose(1, 2)  # (N, m, L, cv)
        return q, k, v

    def _route(self, xw: Tensor, g: _Grid) -> tuple[Tensor, Tensor]:
        """Routing on window means; the projection is affine, so mean(x) W + b = mean(x W + b)."""
        qk, linear = self.qk_dim, self.qkv.qkv
        x_mean = xw.reshape(g.n, g.p2, g.w2, g.c).mean(dim=2)  # (N, p^2, C)
        qk_win = F.linear(x_mean, linear.weight[: 2 * qk], linear.bias[: 2 * qk])  # (N, p^2, 2qk)
        return self.router(qk_win[..., :qk], qk_win[..., qk:])

    def _routed_rows(
        self, k: Tensor, v: Tensor, r_idx: Tensor, g: _Grid
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """Key/value windows (pooled by ``kv_downsample_mode``) as rows of a
        (N*m*p^2, kw^2*c) table, the table rows each query window routes to ((N, m, p^2, topk)
        flattened), and kw^2, the pooled pixels per window."""
        m = self.num_heads
        cq, cv = self.qk_dim // m, self.dim // m
        k_pool = self._kv_down(k.reshape(g.n, m, g.p2, g.hs, g.ws, cq))
        v_pool = self._kv_down(v.reshape(g.n, m, g.p2, g.hs, g.ws, cv))
        kw2 = k_pool.shape[3] * k_pool.shape[4]
        k_rows, v_rows = k_pool.reshape(g.batches, kw2 * cq), v_pool.reshape(g.batches, kw2 * cv)
        base = torch.arange(g.n * m, device=k.device).reshape(g.n, m, 1, 1) * g.p2  # (n, head, 0)
        rows = (r_idx.unsqueeze(1) + base).reshape(g.batches * self.topk)
        return k_rows, v_rows, rows, kw2

    def _attend_in_chunks(
        self,
        q: Tensor,
        k_rows: Tensor,
        v_rows: Tensor,
        rows: Tensor,
        r_weight: Tensor,
        kw2: int,
        g: _Grid,
    ) -> tuple[Tensor, Tensor]:
        """Attention of each query window over its routed key/value rows, in a few chunks of
        query windows: a chunk's scores stay in cache from the QK matmul through the Softmax
        to the AV matmul (all scores at once spill to memory). Chunks split the (head, window)
        axis, which no input size changes; their count is a speed choice made at the export
        size (int(): the tracer hands sizes out as tensors).
        -> out (N, m*p^2, w^2, cv), attention (N, m*p^2, w^2, topk*kw^2)."""
        if self.mul_weight == "hard":
            raise NotImplementedError("differentiable hard routing TBA")
        m, tk = self.num_heads, self.topk
        cq, cv = self.qk_dim // m, self.dim // m
        hp = m * g.p2
        n_chunks = min(hp, -(-int(g.batches * g.w2 * tk * kw2) // _CHUNK_SCORES))
        sizes = [hp // n_chunks + (1 if i < hp % n_chunks else 0) for i in range(n_chunks)]
        q_chunks = q.reshape(g.n, hp, g.w2, cq).split(sizes, dim=1)
        row_chunks = rows.reshape(g.n, hp * tk).split([sz * tk for sz in sizes], dim=1)
        if self.mul_weight == "soft":  # routing weights per gathered row
            w_rows = r_weight.unsqueeze(1).expand(g.n, m, g.p2, tk).reshape(g.n, hp * tk, 1)
            w_chunks = w_rows.split([sz * tk for sz in sizes], dim=1)
        outs, attns = [], []
        for i, sz in enumerate(sizes):
            k_sel = k_rows[row_chunks[i]]  # one Gather: (N, sz*topk, kw^2*cq)
            v_sel = v_rows[row_chunks[i]]
            if self.mul_weight == "soft":
                k_sel, v_sel = k_sel * w_chunks[i], v_sel * w_chunks[i]
            k_sel = k_sel.reshape(g.n, sz, tk * kw2, cq).transpose(-2, -1)
            attn = self.attn_act(q_chunks[i] @ k_sel)  # (N, sz, w^2, topk*kw^2)
            outs.append(attn @ v_sel.reshape(g.n, sz, tk * kw2, cv))  # (N, sz, w^2, cv)
            attns.append(attn)
        if n_chunks == 1:
            return outs[0], attns[0]
        return torch.cat(outs, dim=1), torch.cat(attns, dim=1)

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
