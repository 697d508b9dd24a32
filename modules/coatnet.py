"""CoAtNet: convolution stages followed by attention stages.

Dai et al., NeurIPS 2021, https://arxiv.org/abs/2106.04803

External-Attention-pytorch's small CoAtNet: a conv stem (S0), two MBConv stages (S1, S2)
and two multi-head self-attention stages over all tokens (S3, S4), each followed by a
two-layer point-wise MLP and a 2x down-sampling (2x2 max pool for the maps; a max pool over
pairs of consecutive tokens in the attention stages). Output: ``(B, out_chs[4], H/16, W/16)``.
Same class names, keywords and ``state_dict`` keys as the reference's ``CoAtNet.py`` with
its ``model/conv/MBConv.py`` (``Conv2dStaticSamePadding``, ``MBConvBlock``) and
``ScaledDotProductAttention`` (this zoo's ``self_attention`` module) for S3/S4.

The reference reshapes its last tokens to ``int(sqrt(N)) x int(sqrt(N))``, so inputs must
be square with H = W divisible by 16; that output is ``(H/16, W/16)``, written as such here.

Differences from the reference, all numerically neutral:
- A 'same' padding that splits evenly is the conv's own padding (no separate Pad node).
- Swish is ``F.silu``; MBConv's squeeze is a mean over H, W (``ReduceMean``).
- S3/S4 project q, k and v with one matmul (the three weights stacked, attention scale
  folded into the q rows: constants in the exported graph), as the three inputs are the
  same tokens.
- The token max pool takes the larger of each pair of consecutive tokens on the
  (B, N, C) layout (``Max`` of the two halves of a (B, N/2, 2C) view) instead of
  transposing to (B, C, N) around ``MaxPool1d`` (the reference's parameter-free
  ``maxpool1d`` attribute is not kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ._attention import merge_heads
from ._registry import register_module
from .self_attention import ScaledDotProductAttention

Size = int | Sequence[int]


class Conv2dStaticSamePadding(nn.Conv2d):
    """Conv2d with TensorFlow's 'same' padding for a fixed input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        image_size: Size | None = None,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        assert image_size is not None
        ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pad_h = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        self.static_pad: tuple[int, int, int, int] = (
            pad_w // 2,
            pad_w - pad_w // 2,
            pad_h // 2,
            pad_h - pad_h // 2,
        )
        if pad_h % 2 == 0 and pad_w % 2 == 0:  # symmetric: the conv pads
            self.padding, self.static_pad = (pad_h // 2, pad_w // 2), (0, 0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_pad):
            x = F.pad(x, self.static_pad)
        return super().forward(x)


def _calculate_output_image_size(image_size: Size, stride: int) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return math.ceil(h / stride), math.ceil(w / stride)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand], depth-wise conv, squeeze-excite, 1x1 project."""

    def __init__(
        self,
        ksize: int,
        input_filters: int,
        output_filters: int,
        expand_ratio: int = 1,
        stride: int = 1,
        image_size: Size = 224,
    ) -> None:
        super().__init__()
        self._bn_mom = 0.1
        self._bn_eps = 0.01
        self._se_ratio = 0.25
        self._input_filters = input_filters
        self._output_filters = output_filters
        self._expand_ratio = expand_ratio
        self._kernel_size = ksize
        self._stride = stride

        inp, oup = input_filters, input_filters * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = Conv2dStaticSamePadding(
                inp, oup, 1, image_size=image_size, bias=False
            )
            self._bn0 = nn.BatchNorm2d(oup, momentum=self._bn_mom, eps=self._bn_eps)
        self._depthwise_conv = Conv2dStaticSamePadding(
            oup, oup, ksize, image_size=image_size, groups=oup, stride=stride, bias=False
        )
        self._bn1 = nn.BatchNorm2d(oup, momentum=self._bn_mom, eps=self._bn_eps)
        image_size = _calculate_output_image_size(image_size, stride)
        squeezed = max(1, int(input_filters * self._se_ratio))
        self._se_reduce = Conv2dStaticSamePadding(oup, squeezed, 1, image_size=(1, 1))
        self._se_expand = Conv2dStaticSamePadding(squeezed, oup, 1, image_size=(1, 1))
        self._project_conv = Conv2dStaticSamePadding(
            oup, output_filters, 1, image_size=image_size, bias=False
        )
        self._bn2 = nn.BatchNorm2d(output_filters, momentum=self._bn_mom, eps=self._bn_eps)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self._expand_ratio != 1:
            x = F.silu(self._bn0(self._expand_conv(inputs)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        gate = self._se_expand(
            F.silu(self._se_reduce(x.mean(dim=(2, 3), keepdim=True)))
        )  # (B, C, 1, 1)
        x = self._bn2(self._project_conv(torch.sigmoid(gate) * x))
        if self._stride == 1 and self._input_filters == self._output_filters:
            x = x + inputs
        return x


def _pointwise_mlp(c_in: int, c_out: int, conv: bool) -> nn.Sequential:
    layer = (lambda i, o: nn.Conv2d(i, o, kernel_size=1)) if conv else nn.Linear
    return nn.Sequential(layer(c_in, c_out), nn.ReLU(), layer(c_out, c_out))


def self_attend(attn: ScaledDotProductAttention, y: torch.Tensor) -> torch.Tensor:
    """``attn(y, y, y)`` with q, k, v from one stacked projection: (B, N, C) -> (B, N, C)."""
    B, N, _ = y.shape
    h, dk, dv = attn.h, attn.d_k, attn.d_v
    q_scale = torch.full_like(attn.fc_q.bias, attn.scale)
    weight = torch.cat((attn.fc_q.weight * q_scale[:, None], attn.fc_k.weight, attn.fc_v.weight))
    bias = torch.cat((attn.fc_q.bias * q_scale, attn.fc_k.bias, attn.fc_v.bias))
    qkv = F.linear(y, weight, bias)  # (B, N, h*(2dk+dv))
    q = qkv[..., : h * dk].reshape(B, N, h, dk).transpose(1, 2)  # (B, h, N, dk)
    k = qkv[..., h * dk : 2 * h * dk].reshape(B, N, h, dk).permute(0, 2, 3, 1)  # (B, h, dk, N)
    v = qkv[..., 2 * h * dk :].reshape(B, N, h, dv).transpose(1, 2)  # (B, h, N, dv)
    att = attn.dropout(torch.softmax(q @ k, dim=-1))  # (B, h, N, N)
    return attn.fc_o(merge_heads(att @ v))


def pool_token_pairs(y: torch.Tensor) -> torch.Tensor:
    """MaxPool1d(2, 2) over the tokens of (B, N, C): (B, N, C) -> (B, N // 2, C)."""
    B, N, C = y.shape
    pairs = y[:, : N // 2 * 2].reshape(B, N // 2, 2 * C)
    return torch.maximum(pairs[..., :C], pairs[..., C:])


@register_module(
    "coatnet",
    kwargs=dict(in_ch=3, image_size=224),
    shapes=[(1, 3, 224, 224)],
    paper="CoAtNet: Marrying Convolution and Attention for All Data Sizes",
    url="https://arxiv.org/abs/2106.04803",
    fixed_because="the output is reshaped to a square token grid, so H and W cannot change apart",
)
class CoAtNet(nn.Module):
    def __init__(
        self, in_ch: int, image_size: int, out_chs: Sequence[int] = (64, 96, 192, 384, 768)
    ) -> None:
        super().__init__()
        if len(out_chs) != 5:
            raise UsageError(f"coatnet: out_chs needs 5 stage widths, not {list(out_chs)}")
        self.out_chs = list(out_chs)
        self.maxpool2d = nn.MaxPool2d(kernel_size=2, stride=2)
        self.s0 = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1),
        )
        self.mlp0 = _pointwise_mlp(in_ch, out_chs[0], conv=True)
        self.s1 = MBConvBlock(
            ksize=3, input_filters=out_chs[0], output_filters=out_chs[0], image_size=image_size // 2
        )
        self.mlp1 = _pointwise_mlp(out_chs[0], out_chs[1], conv=True)
        self.s2 = MBConvBlock(
            ksize=3, input_filters=out_chs[1], output_filters=out_chs[1], image_size=image_size // 4
        )
        self.mlp2 = _pointwise_mlp(out_chs[1], out_chs[2], conv=True)
        self.s3 = ScaledDotProductAttention(out_chs[2], out_chs[2] // 8, out_chs[2] // 8, 8)
        self.mlp3 = _pointwise_mlp(out_chs[2], out_chs[3], conv=False)
        self.s4 = ScaledDotProductAttention(out_chs[3], out_chs[3] // 8, out_chs[3] // 8, 8)
        self.mlp4 = _pointwise_mlp(out_chs[3], out_chs[4], conv=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        if not torch.jit.is_tracing() and (H != W or H % 16):
            raise UsageError(
                f"coatnet: input must be square with H = W divisible by 16, not {H}x{W}"
            )
        y = self.maxpool2d(self.mlp0(self.s0(x)))  # (B, c0, H/2, W/2)
        y = self.maxpool2d(self.mlp1(self.s1(y)))  # (B, c1, H/4, W/4)
        y = self.maxpool2d(self.mlp2(self.s2(y)))  # (B, c2, H/8, W/8)
        y = y.flatten(2).transpose(1, 2)  # (B, N, c2)
        y = pool_token_pairs(self.mlp3(self_attend(self.s3, y)))  # (B, N/2, c3)
        y = pool_token_pairs(self.mlp4(self_attend(self.s4, y)))  # (B, N/4, c4)
        return y.transpose(1, 2).reshape(B, self.out_chs[4], H // 16, W // 16)
