"""VGG16 with BatchNorm and the paper's large classifier (33.6M parameters on CIFAR-10)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunescope.models.registry import init_conv_bn, register_model

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nn.Module):
    def __init__(
        self,
        blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS,
        hidden: int = 4096,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
    ):
        super().__init__()
        stages: dict[str, list[str]] = {}
        cin = in_channels
        for b, widths in enumerate(blocks, start=1):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for i, width in enumerate(widths, start=1):
                layers[f"conv{i}"] = nn.Conv2d(cin, width, 3, padding=1)
                layers[f"bn{i}"] = nn.BatchNorm2d(width)
                layers[f"relu{i}"] = nn.ReLU()
                cin = width
            layers["pool"] = nn.MaxPool2d(2)
            setattr(self, f"block{b}", nn.Sequential(layers))
            stages[f"block{b}"] = [f"block{b}.conv{i}" for i in range(1, len(widths) + 1)]
        side = image_size // 2 ** len(blocks)
        if side < 1:
            raise ValueError(f"VGG needs images of at least {2 ** len(blocks)}px")
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(cin * side * side, hidden),
                bn1=nn.BatchNorm1d(hidden),
                relu1=nn.ReLU(),
                drop1=nn.Dropout(0.5),
                fc2=nn.Linear(hidden, hidden),
                bn2=nn.BatchNorm1d(hidden),
                relu2=nn.ReLU(),
                drop2=nn.Dropout(0.5),
                fc3=nn.Linear(hidden, num_classes),
            )
        )
        stages["fc"] = ["classifier.fc1", "classifier.fc2", "classifier.fc3"]
        self.stages = stages
        self.num_blocks = len(blocks)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{b}")(x)
        return self.classifier(torch.flatten(x, 1))


@register_model(
    "vgg16",
    description="VGG16-BN, classifier 4096-4096 with BN1d and dropout (33.6M params on CIFAR-10)",
    classifier=("classifier.fc3",),
    min_image_size=32,
)
def vgg16(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return VGG(VGG16_BLOCKS, 4096, num_classes, in_channels, image_size)
