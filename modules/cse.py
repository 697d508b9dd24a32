"""cSE: the channel squeeze & excitation gate of scSE.

Roy et al., MICCAI 2018, https://arxiv.org/abs/1803.02579

Gates channels: global average pool, a 1x1-conv bottleneck with a ReLU, a sigmoid. The
reference (awesome-attention-mechanism-in-cv's ``AttentionModule/scSE``) drops the ReLU
between ``Conv_Squeeze`` and ``Conv_Excitation`` (the two convs then collapse into one
linear map); here it is restored, as in the paper: ``sigmoid(W1 relu(W2 avgpool(U)))``.
The pool is a mean over H, W (``ReduceMean``); the 1x1 convs on the pooled vector stay
convs (their weights are conv-shaped), so the gate is ReduceMean -> Conv -> Relu -> Conv
-> Sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_module
from ._scse import DYNAMIC, PAPER, URL, GatedInput


@register_module(
    "cse",
    kwargs=dict(in_channels=512),
    shapes=[(1, 512, 7, 7)],
    paper=PAPER,
    url=URL,
    dynamic=DYNAMIC,
)
class cSE(GatedInput):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.Conv_Squeeze = nn.Conv2d(in_channels, in_channels // 2, kernel_size=1, bias=False)
        self.Conv_Excitation = nn.Conv2d(in_channels // 2, in_channels, kernel_size=1, bias=False)

    def gate(self, U: torch.Tensor) -> torch.Tensor:
        z = U.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        return torch.sigmoid(self.Conv_Excitation(torch.relu(self.Conv_Squeeze(z))))
