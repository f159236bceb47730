"""The pre-norm transformer block that vit_tiny and gpt_char share.

Attention is written with separate ``q``, ``k``, ``v`` and ``proj`` Linear layers (no
fused ``in_proj_weight``), so that every projection is a layer of neurons IMP prunes and
the analyses ablate. Shapes are taken from the tensors' last dimensions only, so
torch.fx traces the block and the zeroing engine can replay it on K×B rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION = ("q", "k", "v", "proj")
MLP_LAYERS = ("fc1", "fc2")


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, *, causal: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.causal = causal
        self.ln1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """[B, T, D] → [B, heads, T, D/heads]."""
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split_heads(f(x)) for f in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).flatten(-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


def block_stages(prefix: str, depth: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Stages ``block1..N`` and layer groups ``attention`` / ``mlp`` of ``depth`` blocks."""
    stages = {
        f"block{i + 1}": [f"{prefix}.{i}.{n}" for n in (*ATTENTION, *MLP_LAYERS)]
        for i in range(depth)
    }
    groups = {
        "attention": [f"{prefix}.{i}.{n}" for i in range(depth) for n in ATTENTION],
        "mlp": [f"{prefix}.{i}.{n}" for i in range(depth) for n in MLP_LAYERS],
    }
    return stages, groups


def init_transformer(model: nn.Module) -> None:
    """Truncated-normal(0.02) Linear weights, zero biases, unit LayerNorms (as ViT/GPT-2)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
