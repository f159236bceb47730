"""RegNetX (Radosavovic et al. 2020) with a CIFAR stem.

RegNetX-200MF: depths 1/1/4/7, widths 24/56/152/368, group width 8, bottleneck
ratio 1, no squeeze-excitation. The ImageNet stem (3×3 stride 2) becomes a 3×3
stride-1 convolution for 32×32 inputs and the first stage keeps the resolution,
as stage 1 of the CIFAR ResNets does; later stages halve it.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.models.registry import init_conv_bn, register_model


class XBlock(nn.Module):
    """1×1 → grouped 3×3 (carries the stride) → 1×1, residual; projection when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int, bottleneck: float):
        super().__init__()
        wb = round(cout * bottleneck)
        groups = wb // min(group_width, wb)
        self.conv1 = nn.Conv2d(cin, wb, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(wb)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(wb, wb, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(wb)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(wb, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


class RegNetX(nn.Module):
    def __init__(
        self,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        group_width: int,
        bottleneck: float = 1.0,
        stem_width: int = 32,
        strides: tuple[int, ...] = (1, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        stem_stride: int = 1,
    ):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem_width, 3, stride=stem_stride, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem_width)
        self.stem_relu = nn.ReLU()
        stages: dict[str, list[str]] = {"stem": ["stem"]}
        cin = stem_width
        self.num_stages = len(depths)
        for s, (depth, width, stride) in enumerate(zip(depths, widths, strides, strict=True), 1):
            blocks = []
            for b in range(depth):
                blocks.append(XBlock(cin, width, stride if b == 0 else 1, group_width, bottleneck))
                cin = width
            setattr(self, f"stage{s}", nn.Sequential(*blocks))
            stages[f"stage{s}"] = [
                f"stage{s}.{name}"
                for name, m in getattr(self, f"stage{s}").named_modules()
                if isinstance(m, nn.Conv2d)
            ]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        stages["fc"] = ["fc"]
        self.stages = stages
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"stage{s}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model(
    "regnetx_200mf",
    description="RegNetX-200MF (depths 1/1/4/7, widths 24/56/152/368, group width 8), CIFAR stem",
    classifier=("fc",),
    min_image_size=8,
)
def regnetx_200mf(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return RegNetX(
        (1, 1, 4, 7),
        (24, 56, 152, 368),
        group_width=8,
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model(
    "regnetx_200mf_nogroups",
    description="RegNetX-200MF widths and depths without grouped convolutions, stride-2 stem "
    "(the paper's original code)",
    classifier=("fc",),
    min_image_size=32,
)
def regnetx_200mf_nogroups(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The RegNetX that the paper's numbers came from, as its authors' earlier public code
    (jamilgafur/LTH) is described: RegNetX-200MF's depths 1/1/4/7 and widths 24/56/152/368
    (Radosavovic et al. 2020, pycls), bottleneck ratio 1, but every convolution ungrouped
    (group width = the block's width) and the ImageNet stem's stride 2. The stage strides are
    pycls's (each stage halves the resolution: 32 px in, 1 px after stage 4), since the
    description names only the stem's; the stem keeps pycls's 32 channels. With no groups the
    second convolution of each block has width/8 = 3-46x the weights of ``regnetx_200mf``'s, which is
    why the paper's finding on RegNetX's sparse second convolutions is worth checking on both.
    """
    widths = (24, 56, 152, 368)
    return RegNetX(
        (1, 1, 4, 7),
        widths,
        group_width=max(widths),  # one group: groups = width // min(group_width, width) = 1
        num_classes=num_classes,
        in_channels=in_channels,
        stem_stride=2,
        strides=(2, 2, 2, 2),
    )
