"""A multilayer perceptron: the smallest non-convolutional network the study runs on."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from prunescope.models.registry import ModelInputs, register_model

HIDDEN = (256, 256, 128)


class MLP(nn.Module):
    """Flattened image → Linear+ReLU per hidden width → Linear classifier."""

    def __init__(self, inputs: int, num_classes: int, hidden: tuple[int, ...] = HIDDEN):
        super().__init__()
        widths = (inputs, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.relu = nn.ReLU()
        self.fc = nn.Linear(widths[-1], num_classes)
        self.stages = {f"layer{i + 1}": [f"layers.{i}"] for i in range(len(hidden))}
        self.stages["fc"] = ["fc"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for layer in self.layers:
            x = self.relu(layer(x))
        return self.fc(x)


@register_model(
    "mlp",
    description=f"MLP with hidden widths {'/'.join(map(str, HIDDEN))} on flattened images",
    classifier=("fc",),
    min_image_size=1,
    example=ModelInputs(10, 1, 16),
    example_label="digits",
)
def mlp(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return MLP(in_channels * image_size * image_size, num_classes)
