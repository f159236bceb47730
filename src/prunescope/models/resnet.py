"""CIFAR ResNets (He et al. 2016, §4.2): 3×3 stem, three stages of BasicBlocks.

Shapes change through a 1×1 convolution + BatchNorm shortcut ("option B"), as
the project fixes it (docs/guide.md, "Models and data"); ResNet20 then has 0.27M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.models.registry import init_conv_bn, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Depth 6n+2: stem, 3 stages of n blocks, global average pool, linear classifier."""

    def __init__(
        self,
        depth: int,
        widths: tuple[int, int, int] = (16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages: dict[str, list[str]] = {"stem": ["conv1"]}
        cin = widths[0]
        for s, width in enumerate(widths, start=1):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 1 and b == 0) else 1
                blocks.append(BasicBlock(cin, width, stride))
                cin = width
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
            stages[f"stage{s}"] = [
                f"layer{s}.{name}"
                for name, m in getattr(self, f"layer{s}").named_modules()
                if isinstance(m, nn.Conv2d)
            ]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        stages["fc"] = ["fc"]
        self.stages = stages
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _factory(depth: int, widths: tuple[int, int, int] = (16, 32, 64)):
    def make(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return CifarResNet(depth, widths, num_classes, in_channels)

    return make


for _depth in (20, 32, 56):
    register_model(
        f"resnet{_depth}",
        description=f"CIFAR ResNet-{_depth}, widths 16/32/64",
        classifier=("fc",),
        min_image_size=4,
    )(_factory(_depth))

register_model(
    "resnet8",
    description="narrow CIFAR ResNet-8 (one block per stage, widths 8/16/32): quickstart and tests",
    classifier=("fc",),
    min_image_size=4,
)(_factory(8, (8, 16, 32)))
