"""Models whose graphs the verification must judge by their outputs, not by their export."""

import torch
from torch import nn


class Branchy(nn.Module):
    """Takes another path for inputs with a negative mean: the tracer records only one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0:
            return self.conv(x)
        return self.conv(x).relu()


class TinyFlip(nn.Module):
    """Outputs around 1e-5, whose sign depends on the data: an atol of 1e-4 cannot see it."""

    def forward(self, x):
        y = torch.tanh(x) * 1e-5
        if x.mean() > 0:
            return y
        return -y


class HaloStyle(nn.Module):
    """Pads, then cuts overlapping blocks with unfold: the TorchScript exporter cannot
    (input size not accessible)."""

    def forward(self, x):
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        blocks = padded.unfold(2, 4, 2).unfold(3, 4, 2)  # (B, C, nh, nw, 4, 4)
        return blocks.mean(dim=(-1, -2))


class Tiny(nn.Module):
    """Outputs around 1e-5, computed the same way for every input: must pass."""

    def forward(self, x):
        return torch.tanh(x) * 1e-5
