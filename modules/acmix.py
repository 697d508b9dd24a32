"""ACmix: a mix of self-attention and convolution sharing the 1x1 projections.

Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022,
https://arxiv.org/abs/2111.14556

Three 1x1 convs give q, k, v. The attention path does local multi-head attention over a
``kernel_att`` x ``kernel_att`` window (reflection padded) with a relative position
encoding; the convolution path mixes the q/k/v heads with a 1x1 ``fc`` into
``kernel_conv**2`` maps per head channel and applies the grouped ``dep_conv`` (initialised to
the shift kernels). Output: ``rate1 * attention + rate2 * convolution``. Same class name,
constructor keywords and ``state_dict`` keys as External-Attention-pytorch's ``ACmix.py``
(``dep_conv`` has no bias there either: its ``reset_parameters`` sets it to ``None``).

What differs from the reference, and why (same outputs):

- The reference gathers each window with ``ReflectionPad2d`` + ``nn.Unfold`` three times (k,
  v and the position map), which exports to long Gather/Concat chains and materialises
  ``kernel_att**2`` copies of k and v. Here the window attention is rewritten as dense
  attention over all positions with a constant additive bias: a window that reflects at the
  border visits some positions twice and misses others, so ``log(visits)`` (``-inf`` for
  missed positions) on the logits gives exactly the window softmax. Logits are
  ``q . (k - pe)``: the ``q . pe_query`` term of the reference is the same for every key
  and cancels in the softmax. This is two MatMuls, an Add and a Softmax per call. For
  large maps (more than ``dense_max_positions`` positions) a gathered-window path is used
  instead, so memory stays linear in the map size. A graph with dynamic height/width keeps
  the path of its export size. The bias, the window index and the position grid are built
  from the map size with ``arange`` (constants of a static graph; computed from the input's
  shape in a dynamic one).
- The position grid is mapped by ``conv_p``'s weights with a MatMul, and built in float32
  (the reference's traced ``linspace`` exports in float64, and ORT has no float64 Conv, so
  its graph does not load).
- q, k, v come from one 1x1 conv over the concatenated weights, and ``fc`` is a MatMul over
  the (q|k|v, head) axis, which is already contiguous in that layout.
- ``dep_conv`` (``head_dim`` groups of ``kernel_conv**2`` inputs) is run as a depthwise conv
  (ONNX Runtime has a fast depthwise kernel, not a fast grouped one; README, "Rewrites for
  speed"): repeating ``fc``'s rows gives one copy of the group's maps per output channel,
  the depthwise conv applies ``dep_conv.weight`` (with ``rate2`` folded in) tap by tap, and
  a MatMul with a ones vector sums over the ``kernel_conv**2`` inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import bias_of
from ._registry import register_module

# The builders below take the map size as ints, or as the exporter's traced sizes: a graph
# then computes them from the input's shape (at a static size they fold to constants).


def _linspace(n) -> torch.Tensor:
    """linspace(-1, 1, n) in float32, from arange so that n can be a traced size ([-1] for 1)."""
    return torch.arange(n, dtype=torch.float32) * (2.0 / (n - 1 + (n == 1))) - 1.0


def position(h, w) -> torch.Tensor:
    """The reference's (1, 2, h, w) grid: channel 0 runs over the width, 1 over the height."""
    loc_w = _linspace(w).reshape(1, -1).expand(h, w)
    loc_h = _linspace(h).reshape(-1, 1).expand(h, w)
    return torch.stack([loc_w, loc_h]).unsqueeze(0)


def _window_sources(n, n_out, kernel: int, pad: int, stride: int) -> torch.Tensor:
    """(n_out, kernel) source index of each window tap along one axis, after reflection
    padding (edge not repeated)."""
    t = (torch.arange(n_out) * stride).unsqueeze(1) + torch.arange(kernel) - pad
    t = t.abs()
    return torch.where(t > n - 1, 2 * (n - 1) - t, t)


def _window_bias(h, w, ho, wo, kernel: int, pad: int, stride: int) -> torch.Tensor:
    """(ho*wo, h*w) log of how often each position falls in each query's window (-inf: never).

    Visits factor over the two axes, so the log is a sum of per-axis logs.
    """
    logs = []
    for n, n_out in ((h, ho), (w, wo)):
        src = _window_sources(n, n_out, kernel, pad, stride)  # (n_out, k)
        visits = (src.unsqueeze(-1) == torch.arange(n)).float().sum(1)  # (n_out, n)
        logs.append(torch.log(visits))
    return (logs[0][:, None, :, None] + logs[1][None, :, None, :]).reshape(ho * wo, h * w)


def _window_index(h, w, ho, wo, kernel: int, pad: int, stride: int) -> torch.Tensor:
    """(ho*wo*kernel*kernel,) flat source position of every window tap, query-major."""
    si = _window_sources(h, ho, kernel, pad, stride)  # (ho, k)
    sj = _window_sources(w, wo, kernel, pad, stride)  # (wo, k)
    flat = si[:, None, :, None] * w + sj[None, :, None, :]  # (ho, wo, k, k)
    return flat.reshape(-1)


# The shape-only constants ``ACmix._const`` builds, by kind.
_CONSTANTS: dict[str, Callable[..., torch.Tensor]] = {
    "pos": position,
    "bias": _window_bias,
    "index": _window_index,
}


def init_rate_half(tensor: torch.Tensor) -> None:
    if tensor is not None:
        tensor.data.fill_(0.5)


@register_module(
    "acmix",
    kwargs=dict(in_planes=256, out_planes=256),
    shapes=[(1, 256, 7, 7)],
    paper="On the Integration of Self-Attention and Convolution",
    url="https://arxiv.org/abs/2111.14556",
    dynamic=("batch", "height", "width"),
    min_spatial=lambda kw: (
        kw.get("kernel_att", 7) // 2 + 1
    ),  # reflection padding needs a larger map
)
class ACmix(nn.Module):
    # Dense attention (a positions x positions bias) up to this many positions (32x32, where
    # it stops being the faster of the two on ONNX Runtime), gathered windows above.
    dense_max_positions = 1024

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_att: int = 7,
        head: int = 4,
        kernel_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.head = head
        self.kernel_att = kernel_att
        self.kernel_conv = kernel_conv
        self.stride = stride
        self.dilation = dilation
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.head_dim = out_planes // head

        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)

        self.padding_att = (dilation * (kernel_att - 1) + 1) // 2
        self.fc = nn.Conv2d(3 * head, kernel_conv * kernel_conv, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(
            kernel_conv * kernel_conv * self.head_dim,
            out_planes,
            kernel_size=kernel_conv,
            bias=False,
            groups=self.head_dim,
            padding=1,
            stride=stride,
        )
        self._consts: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_rate_half(self.rate1)
        init_rate_half(self.rate2)
        # dep_conv starts as the kernel_conv**2 one-hot shift kernels (a plain convolution).
        k = self.kernel_conv
        kernel = torch.zeros(k * k, k, k)
        for i in range(k * k):
            kernel[i, i // k, i % k] = 1.0
        with torch.no_grad():
            self.dep_conv.weight.copy_(kernel.repeat(self.out_planes, 1, 1, 1))

    def _const(self, kind: str, like: torch.Tensor, *sizes) -> torch.Tensor:
        """Shape-only constants: from the traced sizes when exporting (a dynamic graph follows
        the input's size), else built once per input size."""
        build = _CONSTANTS[kind]
        if torch.jit.is_tracing():
            const = build(*sizes).to(like.device)
            return const.to(like.dtype) if const.is_floating_point() else const
        key = (kind, *(int(v) for v in sizes), str(like.device), like.dtype)
        if key not in self._consts:
            # built as a normal tensor: a cached inference tensor would break a later export
            with torch.inference_mode(False):
                const = build(*key[1:-2])
                dtype = like.dtype if const.is_floating_point() else None
                self._consts[key] = const.to(like.device, dtype)
        return self._consts[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ho, wo = self._window_counts(h, w)
        # q | k | v in one 1x1 conv: (B, C_in, H, W) -> (B, 3C, H, W)
        weight = torch.cat([self.conv1.weight, self.conv2.weight, self.conv3.weight], 0)
        bias = torch.cat([bias_of(self.conv1), bias_of(self.conv2), bias_of(self.conv3)], 0)
        qkv = F.conv2d(x, weight, bias)
        out_att = self._attention_path(x, qkv, b, h, w, ho, wo)
        out_conv = self._convolution_path(qkv, b, h, w)
        return self.rate1 * out_att + out_conv

    def _window_counts(self, h: int, w: int) -> tuple[int, int]:
        """The attention windows along H and W (the reference's unfold), checked against the
        map: one per output pixel, and the reflection padding smaller than the map."""
        s, ka, pad = self.stride, self.kernel_att, self.padding_att
        ho = (h + 2 * pad - ka) // s + 1
        wo = (w + 2 * pad - ka) // s + 1
        if (ho, wo) != ((h - 1) // s + 1, (w - 1) // s + 1):
            raise ValueError(
                f"kernel_att={ka}, dilation={self.dilation} give {ho}x{wo} windows on {h}x{w}"
            )
        if pad >= min(h, w):
            raise ValueError(f"reflection padding {pad} needs a map larger than {h}x{w}")
        return ho, wo

    def _attention_path(
        self, x: torch.Tensor, qkv: torch.Tensor, b: int, h: int, w: int, ho: int, wo: int
    ) -> torch.Tensor:
        """Window attention with the relative position encoding: (B, out_planes, Ho, Wo)."""
        s, hd, nh = self.stride, self.head_dim, self.head
        ka, pad = self.kernel_att, self.padding_att
        q, k, v = qkv.view(b, 3 * nh, hd, h * w).split(nh, 1)  # each (B, head, hd, HW)
        loc = self._const("pos", x, h, w).view(2, h * w)
        # conv_p on the grid: (hd, 2) @ (2, HW) -> (hd, HW)
        pe = torch.matmul(self.conv_p.weight.view(hd, 2), loc) + bias_of(self.conv_p).view(hd, 1)
        k = k - pe  # logits q . (k - pe); the q . pe_query term cancels in the softmax
        q = q * float(hd) ** -0.5
        if s > 1:
            q = q.view(b, nh, hd, h, w)[:, :, :, ::s, ::s].reshape(b, nh, hd, ho * wo)
        if h * w <= self.dense_max_positions:
            logits = torch.matmul(q.transpose(-1, -2), k)  # (B, head, HoWo, HW)
            attn = torch.softmax(logits + self._const("bias", x, h, w, ho, wo, ka, pad, s), dim=-1)
            out_att = torch.matmul(v, attn.transpose(-1, -2))  # (B, head, hd, HoWo)
        else:
            index = self._const("index", x, h, w, ho, wo, ka, pad, s)
            kw = torch.index_select(k.transpose(-1, -2), 2, index).view(b, nh, ho * wo, ka * ka, hd)
            vw = torch.index_select(v.transpose(-1, -2), 2, index).view(b, nh, ho * wo, ka * ka, hd)
            # (B, head, HoWo, 1, hd) @ (B, head, HoWo, hd, k*k) -> (B, head, HoWo, 1, k*k)
            logits = torch.matmul(q.transpose(-1, -2).unsqueeze(-2), kw.transpose(-1, -2))
            out_att = torch.matmul(torch.softmax(logits, dim=-1), vw)  # (B, head, HoWo, 1, hd)
            out_att = out_att.view(b, nh, ho * wo, hd).transpose(-1, -2)
        return out_att.reshape(b, self.out_planes, ho, wo)

    def _convolution_path(self, qkv: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """``dep_conv(fc(q|k|v))`` with ``rate2`` folded in: (B, out_planes, Hc, Wc).

        ``fc`` mixes the 3*head maps of each head channel into kc2 maps, then the grouped
        ``dep_conv`` runs as a depthwise conv (fast in ONNX Runtime, unlike a grouped conv
        with few channels per group) on one copy of those maps per output channel of the
        group, summed over kc2. The copies come free from repeating fc's rows; their order
        (kc2, m, hd) keeps the sum on a leading axis.
        """
        hd, nh = self.head_dim, self.head
        kc2 = self.kernel_conv * self.kernel_conv
        m = self.out_planes // hd  # dep_conv outputs per group
        fc = self.fc.weight.view(kc2, 1, 3 * nh).expand(kc2, m, 3 * nh).reshape(kc2 * m, 3 * nh)
        f_rep = torch.matmul(fc, qkv.view(b, 3 * nh, hd * h * w))  # (B, kc2*m, hd*HW)
        dw_weight = (
            self.dep_conv.weight.view(hd, m, kc2, self.kernel_conv, self.kernel_conv)
            .permute(2, 1, 0, 3, 4)
            .reshape(kc2 * m * hd, 1, self.kernel_conv, self.kernel_conv)
        ) * self.rate2  # channel (j, i, d) <- dep_conv.weight[d * m + i, j]; rate2 folded in
        dc = self.dep_conv
        groups = kc2 * m * hd
        y = F.conv2d(
            f_rep.view(b, groups, h, w), dw_weight, None, dc.stride, dc.padding, dc.dilation, groups
        )
        hc, wc = y.shape[-2:]
        ones = y.new_ones(1, kc2)  # the kc2 sum as a MatMul: faster than ReduceSum in ORT
        out_conv = torch.matmul(ones, y.view(b, kc2, m * hd * hc * wc))  # (B, 1, m*hd*HcWc)
        # channels (m, hd) -> (hd, m), the reference's order
        out_conv = out_conv.view(b, m, hd, hc * wc).transpose(1, 2)
        return out_conv.reshape(b, self.out_planes, hc, wc)
