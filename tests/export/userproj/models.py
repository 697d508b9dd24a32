"""A YOLO-style detector: the zoo's attention blocks inside, a caching dict-returning head."""

import torch
from torch import nn

from attn_export.modules import CBAMBlock, SEAttention


class Detect(nn.Module):
    """Caches its anchor grid on the first call, as Ultralytics' Detect does."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.box = nn.Conv2d(channels, 4, 1)
        self.cls = nn.Conv2d(channels, num_classes, 1)
        self.grid = torch.empty(0)

    def forward(self, x):
        b, _, h, w = x.shape
        if self.grid.shape[-2:] != (h, w):
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            self.grid = torch.stack((xs, ys), 0).float().view(1, 2, h, w)
        box = self.box(x)
        xy = (box[:, :2].sigmoid() * 2 - 0.5 + self.grid) * 8
        wh = box[:, 2:].exp()
        scores = self.cls(x).sigmoid().flatten(2)
        return torch.cat((xy, wh), 1).flatten(2), {"scores": scores, "features": x}


class Detector(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU()
        )
        self.cbam = CBAMBlock(channel=32, reduction=4, kernel_size=7)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU())
        self.se = SEAttention(channel=64, reduction=8)
        self.head = Detect(64, num_classes)

    def forward(self, x):
        return self.head(self.se(self.down(self.cbam(self.stem(x)))))


def build(num_classes=3):
    return Detector(num_classes)
