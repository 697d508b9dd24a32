"""What the scSE family (``cse``, ``sse``, ``scse``) shares: its paper and the gated forward.

Roy et al., "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional
Networks", MICCAI 2018, https://arxiv.org/abs/1803.02579. Same class names, keyword and
``state_dict`` keys as awesome-attention-mechanism-in-cv's ``AttentionModule/scSE``.
"""

from __future__ import annotations

import torch
from torch import nn

PAPER = "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks"
URL = "https://arxiv.org/abs/1803.02579"
DYNAMIC = ("batch", "height", "width")


class GatedInput(nn.Module):
    """``U * gate(U)``: a block that recalibrates its input by a sigmoid gate."""

    def gate(self, U: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        return U * self.gate(U)
