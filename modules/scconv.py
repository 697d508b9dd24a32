"""SCConv: self-calibrated convolution.

Liu et al., "Improving Convolutional Networks with Self-Calibrated Convolutions", CVPR 2020,
http://mftp.mmcheng.net/Papers/20cvprSCNet.pdf

A 3x3 conv on an average-pooled copy of the input (``k2``), upsampled back, is added to the
input; its sigmoid calibrates a second 3x3 conv of the input (``k3``), and a third conv
(``k4``, which carries the stride) maps the product to the output.
Same class name, keywords and ``state_dict`` keys (``k2.1``/``k2.2``, ``k3.*``, ``k4.*``) as
pprp/awesome-attention-mechanism-in-cv's ``AttentionModule/SCNet/scnet.py`` (MCG-NKU/SCNet),
except that ``norm_layer`` defaults to ``nn.BatchNorm2d`` (SCNet's) instead of being required.
The upsampling is nearest-neighbour to the input's own size, taken from its shape, so any
height and width export (``Resize`` with sizes from ``Shape``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from ._registry import register_module


def _conv_norm(
    inplanes: int,
    planes: int,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
    norm_layer: Callable[[int], nn.Module],
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            inplanes,
            planes,
            kernel_size=3,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
        norm_layer(planes),
    )


@register_module(
    "scconv",
    kwargs=dict(inplanes=32, planes=32, stride=1, padding=1, dilation=1, groups=1, pooling_r=4),
    shapes=[(1, 32, 56, 56)],
    paper="Improving Convolutional Networks with Self-Calibrated Convolutions",
    url="http://mftp.mmcheng.net/Papers/20cvprSCNet.pdf",
    dynamic=("batch", "height", "width"),
)
class SCConv(nn.Module):
    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        padding: int,
        dilation: int,
        groups: int,
        pooling_r: int,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        # The calibration adds k2's output to the input and multiplies k3's by it.
        if planes != inplanes or padding != dilation:
            raise UsageError(
                "SCConv needs planes == inplanes and padding == dilation "
                f"(got {planes}, {inplanes}, {padding}, {dilation})"
            )
        self.k2 = nn.Sequential(
            nn.AvgPool2d(kernel_size=pooling_r, stride=pooling_r),
            *_conv_norm(inplanes, planes, 1, padding, dilation, groups, norm_layer),
        )
        self.k3 = _conv_norm(inplanes, planes, 1, padding, dilation, groups, norm_layer)
        self.k4 = _conv_norm(inplanes, planes, stride, padding, dilation, groups, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = F.interpolate(
            self.k2(x), x.shape[2:]
        )  # (B, C, H/r, W/r) -> (B, C, H, W), nearest
        calibration = torch.sigmoid(x + context)
        return self.k4(self.k3(x) * calibration)  # (B, C, H/stride, W/stride)
