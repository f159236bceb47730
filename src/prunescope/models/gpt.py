"""gpt_char: a small decoder-only transformer for character-level language modelling."""

from __future__ import annotations

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.models.registry import ModelInputs, register_model
from prunescope.models.transformer import Block, block_stages, init_transformer

DIM, DEPTH, HEADS, MLP_RATIO = 96, 4, 3, 4


class CharGPT(nn.Module):
    """Token and position embeddings → causal pre-norm blocks → LayerNorm → Linear over
    the vocabulary, at every position. The embeddings are not Linear layers and are not
    pruned (list torch.nn.Embedding in imp.prunable_types to prune them)."""

    def __init__(
        self,
        vocab: int,
        context: int,
        *,
        dim: int = DIM,
        depth: int = DEPTH,
        heads: int = HEADS,
        mlp_ratio: int = MLP_RATIO,
    ):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, context, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, causal=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        stages, self.layer_groups = block_stages("blocks", depth)
        self.stages = {**stages, "head": ["head"]}
        init_transformer(self)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tokens(idx) + self.pos[:, : idx.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


@register_model(
    "gpt_char",
    description=f"decoder-only transformer, width {DIM}, {DEPTH} causal pre-norm blocks of "
    f"{HEADS} heads, separate q/k/v",
    classifier=("head",),
    min_image_size=0,
    example=ModelInputs(num_classes=65, in_channels=1, image_size=0, context=64),
    example_label="65 characters, context 64",
)
def gpt_char(num_classes: int, context: int | None) -> nn.Module:
    if not context:
        raise UserInputError(
            "gpt_char reads token sequences: use a text dataset (shakespeare_char)"
        )
    return CharGPT(num_classes, context)
