"""vit_tiny: a small vision transformer for 32×32 images (patch 4, pre-norm blocks)."""

from __future__ import annotations

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.models.registry import register_model
from prunescope.models.transformer import Block, block_stages, init_transformer

PATCH, DIM, DEPTH, HEADS, MLP_RATIO = 4, 96, 4, 3, 2


class VisionTransformer(nn.Module):
    """Patch embedding (a stride-4 convolution) + learned positions → blocks → LayerNorm,
    mean over patches → Linear classifier."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        *,
        patch: int = PATCH,
        dim: int = DIM,
        depth: int = DEPTH,
        heads: int = HEADS,
        mlp_ratio: int = MLP_RATIO,
    ):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, causal=False) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        stages, self.layer_groups = block_stages("blocks", depth)
        self.stages = {"embed": ["embed"], **stages, "head": ["head"]}
        init_transformer(self)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # [B, patches, dim]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


@register_model(
    "vit_tiny",
    description=f"vision transformer, patch {PATCH}, width {DIM}, {DEPTH} pre-norm blocks of "
    f"{HEADS} heads, separate q/k/v",
    classifier=("head",),
    min_image_size=PATCH,
)
def vit_tiny(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    if image_size % PATCH:
        raise UserInputError(f"vit_tiny needs an image size divisible by {PATCH}, got {image_size}")
    return VisionTransformer(num_classes, in_channels, image_size)
