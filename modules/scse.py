"""scSE: Concurrent Spatial and Channel Squeeze & Excitation.

Roy et al., MICCAI 2018, https://arxiv.org/abs/1803.02579

``cSE`` gates channels (global average pool, a 1x1-conv bottleneck with a ReLU, a
sigmoid), ``sSE`` gates pixels (a 1x1 conv to one map, a sigmoid), ``csSE`` adds the two
recalibrated maps. Same class names, keyword and ``state_dict`` keys as
awesome-attention-mechanism-in-cv's ``AttentionModule/scSE``. That code drops the ReLU
between ``Conv_Squeeze`` and ``Conv_Excitation`` (the two convs then collapse into one
linear map); here it is restored, as in the paper: ``sigmoid(W1 relu(W2 avgpool(U)))``.
The pool is a mean over H, W (``ReduceMean``); the 1x1 convs on the pooled vector stay
convs (their weights are conv-shaped), so the gate is ReduceMean -> Conv -> Relu -> Conv
-> Sigmoid. ``csSE`` sums the two gates before multiplying (``U * (g_c + g_s)``): two
full-size elementwise ops instead of the reference's three, the same result.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module

_PAPER = "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks"
_URL = "https://arxiv.org/abs/1803.02579"


@register_module(
    "cse",
    kwargs=dict(in_channels=512),
    shapes=[(1, 512, 7, 7)],
    paper=_PAPER,
    url=_URL,
    dynamic=("batch", "height", "width"),
)
class cSE(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.Conv_Squeeze = nn.Conv2d(in_channels, in_channels // 2, kernel_size=1, bias=False)
        self.Conv_Excitation = nn.Conv2d(in_channels // 2, in_channels, kernel_size=1, bias=False)

    def gate(self, U: torch.Tensor) -> torch.Tensor:
        z = U.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        return torch.sigmoid(self.Conv_Excitation(torch.relu(self.Conv_Squeeze(z))))  # (B, C, 1, 1)

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        return U * self.gate(U)


@register_module(
    "sse",
    kwargs=dict(in_channels=64),
    shapes=[(1, 64, 56, 56)],
    paper=_PAPER,
    url=_URL,
    dynamic=("batch", "height", "width"),
)
class sSE(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.Conv1x1 = nn.Conv2d(in_channels, 1, kernel_size=1, bias=False)

    def gate(self, U: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.Conv1x1(U))  # (B, C, H, W) -> (B, 1, H, W)

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        return U * self.gate(U)


@register_module(
    "scse",
    kwargs=dict(in_channels=64),
    shapes=[(1, 64, 56, 56)],
    paper=_PAPER,
    url=_URL,
    dynamic=("batch", "height", "width"),
)
class csSE(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.cSE = cSE(in_channels)
        self.sSE = sSE(in_channels)

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        # U * g_c + U * g_s, with the gates summed first: one full-size Mul fewer
        return U * (self.cSE.gate(U) + self.sSE.gate(U))  # (B, C, 1, 1) + (B, 1, H, W)
