"""Non-local block (embedded Gaussian), 2-D.

Wang et al., CVPR 2018, https://arxiv.org/abs/1711.07971

Every position attends to every (2x2 max-pooled, with ``sub_sample``) position:
``softmax(theta(x)^T phi(x))`` weighs ``g(x)``; a 1x1 conv ``W`` (with a zero-initialized
BatchNorm, so the block starts as the identity) maps the result back to ``in_channels``
and adds it to the input. Same class name, keywords, init and ``state_dict`` keys as
awesome-attention-mechanism-in-cv's ``AttentionModule/Non-local/lib/
non_local_embedded_gaussian.py`` (AlexHex7's ``NONLocalBlock2D``). The file is named after
the registry entry; ``nonlocal`` being a Python keyword is harmless since the package
imports it with importlib. The reference forward's debug flag ``return_nl_map`` is left
out: the ONNX exporter turns a defaulted forward argument into a graph input.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import bias_of
from ._registry import register_module


@register_module(
    "nonlocal",
    kwargs=dict(in_channels=1024),
    shapes=[(1, 1024, 14, 14)],
    paper="Non-local Neural Networks",
    url="https://arxiv.org/abs/1711.07971",
    dynamic=("batch", "height", "width"),
    # The attention sums over every position: at 21x21 (441 terms, 512 inner channels) ONNX
    # Runtime's summation order moved one output of 0.023 by 1.1e-4 (nrmse 1e-6).
    atol=3e-4,
)
class NONLocalBlock2D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        sub_sample: bool = True,
        bn_layer: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // 2, 1) if inter_channels is None else inter_channels
        self.sub_sample = sub_sample
        inter = self.inter_channels
        self.g: nn.Module = nn.Conv2d(in_channels, inter, kernel_size=1)
        # W starts at zero (its BatchNorm's affine, else the conv), so the block starts as identity
        last: nn.Conv2d | nn.BatchNorm2d
        if bn_layer:
            conv, last = nn.Conv2d(inter, in_channels, kernel_size=1), nn.BatchNorm2d(in_channels)
            self.W: nn.Module = nn.Sequential(conv, last)
        else:
            self.W = last = nn.Conv2d(inter, in_channels, kernel_size=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(bias_of(last))
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.phi: nn.Module = nn.Conv2d(in_channels, inter, kernel_size=1)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(kernel_size=(2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool2d(kernel_size=(2, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta_x = self.theta(x).flatten(2).transpose(1, 2)  # (B, C', N), N = HW -> (B, N, C')
        phi_x = self.phi(x).flatten(2)  # (B, C', M), M = pooled HW
        g_x = self.g(x).flatten(2).transpose(1, 2)  # (B, M, C')
        attention = torch.softmax(torch.matmul(theta_x, phi_x), dim=-1)  # (B, N, M)
        y = torch.matmul(attention, g_x).transpose(1, 2)  # (B, N, C') -> (B, C', N)
        return self.W(y.reshape(b, self.inter_channels, h, w)) + x
