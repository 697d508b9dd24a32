"""``--nhwc``: a graph that takes and returns channel-last tensors.

TensorFlow and TFLite deployments keep activations as (B, H, W, C). The adapter permutes
each input to PyTorch's (B, C, H, W), runs the module and permutes 4-D outputs back, so
the exported graph's edges are channel-last while the module stays as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .parsing import Shape, shape_text


class ChannelsLastAdapter(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor):
        nchw = [x.permute(0, 3, 1, 2) for x in inputs]  # (B, H, W, C) -> (B, C, H, W)
        return self._back(self.module(*nchw))

    @classmethod
    def _back(cls, out: Any) -> Any:
        """Every 4-D tensor leaf of the output structure back to (B, H, W, C)."""
        if isinstance(out, torch.Tensor):
            # (B, C, H, W) -> (B, H, W, C)
            return out.permute(0, 2, 3, 1) if out.dim() == 4 else out
        if isinstance(out, dict):
            return {k: cls._back(v) for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            backs = [cls._back(v) for v in out]
            return backs if isinstance(out, list) else tuple(backs)
        return out


def channels_last(shape: Shape) -> Shape:
    """A (B, C, H, W) shape as (B, H, W, C)."""
    return (shape[0], shape[2], shape[3], shape[1])


def check_nhwc_shapes(name: str, shapes: Sequence[Shape]) -> list[Shape]:
    bad = [s for s in shapes if len(s) != 4]
    if bad:
        raise UsageError(
            f"--nhwc takes four-dimensional (B, H, W, C) inputs only; {name} input shape "
            f"{shape_text(bad[0])} has rank {len(bad[0])}"
        )
    return list(shapes)
