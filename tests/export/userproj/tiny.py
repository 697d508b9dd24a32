"""A YOLO-style toy detector with attention blocks from attn-export inserted."""

from torch import nn

from attn_export.modules import CBAMBlock, SEAttention


def conv(c_in, c_out, stride):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()
    )


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int = 80, width: int = 16):
        super().__init__()
        self.stem = conv(3, width, 2)
        self.stage1 = nn.Sequential(
            conv(width, 2 * width, 2), SEAttention(channel=2 * width, reduction=4)
        )
        self.stage2 = nn.Sequential(
            conv(2 * width, 4 * width, 2),
            CBAMBlock(channel=4 * width, reduction=4, kernel_size=3),
        )
        self.head = nn.Conv2d(4 * width, 5 + num_classes, 1)

    def forward(self, x):
        return self.head(self.stage2(self.stage1(self.stem(x))))


def build(num_classes: int = 80, width: int = 16) -> nn.Module:
    return TinyDetector(num_classes=num_classes, width=width)
