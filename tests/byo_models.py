"""Models researchers bring: user factories for ``model.name = "byo_models:<factory>"``.

Each factory is what a researcher would write in their own code, unchanged for
prunescope: a Hugging Face model returned as it is (its forward returns a
``ModelOutput`` with ``.logits``), PyTorch Geometric convolutions that read an
``edge_index``, an LSTM, tied input/output embeddings, in-place ReLUs, data-dependent
control flow. Tiny sizes everywhere (width 32-64, 2 layers, 2 heads), random weights
built from a config (nothing is downloaded).

prunescope calls a factory with the inputs it declares by name
(:class:`prunescope.models.registry.ModelInputs`):

- token data (``shakespeare_char``): ``num_classes`` is the vocabulary, ``context``
  the sequence length; the model reads ``[batch, context]`` int64 token ids and should
  give ``[batch, context, vocabulary]`` logits (next character at every position);
- images (``digits``, ``cifar10``): ``num_classes``, ``in_channels``, ``image_size``;
  the model reads ``[batch, channels, size, size]`` floats;
- graphs (``sbm``, ``planetoid``): ``features``, ``num_classes`` and ``graph`` (the
  normalised sparse adjacency, self loops included); the model reads the node
  features ``[nodes, features]`` of the whole graph.

``CONFIGS`` holds, for each factory, the TOML a researcher would write for it: tiny
settings (1 pruning level of 50 %, 1 pretrain + 1 train epoch, small subsets) so that
``bench/byo_models.py`` can run the whole study on each in a few minutes of one CPU
thread. The same texts serve as end-to-end tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------- Hugging Face


def hf_gpt2(num_classes: int, context: int, *, tie: bool = True) -> nn.Module:
    """GPT-2 (``GPT2LMHeadModel``) as ``transformers`` builds it: ``lm_head`` tied to
    ``transformer.wte`` (the default ``tie_word_embeddings=True``); attention and MLP are
    ``transformers.pytorch_utils.Conv1D`` layers, whose weight is ``[in, out]`` (the
    transpose of ``nn.Linear``'s): ``Conv1D(nf, nx)`` has ``nf`` output neurons."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=num_classes,
        n_positions=context,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        tie_word_embeddings=tie,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def hf_llama(num_classes: int, context: int) -> nn.Module:
    """Llama (``LlamaForCausalLM``): RMSNorm, rotary positions, SwiGLU MLP; separate
    q/k/v/o ``nn.Linear`` projections; output head not tied (Llama's default)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=num_classes,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config)


def hf_vit(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ViT (``ViTForImageClassification``): a Conv2d patch embedding, 2 encoder layers of
    separate q/k/v ``nn.Linear``, a ``classifier`` Linear on the [CLS] token. The patch
    size is the largest of 4, 2, 1 that divides the image."""
    from transformers import ViTConfig, ViTForImageClassification

    patch = next(p for p in (4, 2, 1) if image_size % p == 0)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch,
        num_channels=in_channels,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_classes,
    )
    return ViTForImageClassification(config)


def hf_bert(num_classes: int, context: int, *, tie: bool = True) -> nn.Module:
    """BERT for next-character prediction: ``BertLMHeadModel`` with ``is_decoder=True``,
    i.e. causal self-attention, so position t sees characters 0..t only and its logits
    predict character t+1, as the data's labels ask. (``BertForMaskedLM`` attends both
    ways: on these windows, position t would see its own label at position t+1 of the
    input and the task would be copying.) Its decoder ``cls.predictions.decoder`` is tied
    to ``bert.embeddings.word_embeddings`` (``tie_word_embeddings=True``, the default)."""
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(
        vocab_size=num_classes,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=context,
        is_decoder=True,
        tie_word_embeddings=tie,
        pad_token_id=0,
    )
    return BertLMHeadModel(config)


# ---------------------------------------------------------------------- PyTorch Geometric


class PygNet(nn.Module):
    """Two PyG convolutions over a fixed graph: ``forward(x)`` reads node features only;
    the graph's ``edge_index`` is a buffer (as a researcher keeps it: persistent, the
    default of ``register_buffer``)."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, graph: torch.Tensor):
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.register_buffer("edge_index", graph.coalesce().indices())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.conv1(x, self.edge_index))
        x = F.dropout(x, p=0.5, training=self.training)
        return self.conv2(x, self.edge_index)


def pyg_gcn(features: int, num_classes: int, graph: torch.Tensor) -> nn.Module:
    """Kipf & Welling's GCN from ``torch_geometric.nn.GCNConv`` (hidden 32). Each conv's
    weight is its ``lin`` (a ``torch_geometric.nn.dense.linear.Linear``, weight
    ``[out, in]``, no bias); the bias belongs to the conv, added after aggregation."""
    from torch_geometric.nn import GCNConv

    return PygNet(GCNConv(features, 32), GCNConv(32, num_classes), graph)


def pyg_gat(features: int, num_classes: int, graph: torch.Tensor) -> nn.Module:
    """GAT from ``torch_geometric.nn.GATConv``: 4 heads of 8 (concatenated, 32), then one
    head over the classes. Each conv's ``lin`` projects to heads x channels; the attention
    vectors ``att_src``/``att_dst`` and the bias are the conv's own parameters."""
    from torch_geometric.nn import GATConv

    return PygNet(
        GATConv(features, 8, heads=4, dropout=0.5),
        GATConv(32, num_classes, heads=1, dropout=0.5),
        graph,
    )


# ------------------------------------------------------------------------- hand-written


class LstmLM(nn.Module):
    def __init__(self, vocab: int, dim: int = 32, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(idx))
        return self.head(torch.relu(self.proj(out)))


def lstm_lm(num_classes: int) -> nn.Module:
    """``nn.Embedding`` → 2-layer ``nn.LSTM`` (hidden 64, batch_first) → ``nn.Linear``
    projection → ``nn.Linear`` head. The LSTM's weights (``weight_ih_l0``, ``weight_hh_l0``,
    ...) are not one ``.weight``: it stays dense (listing ``torch.nn.LSTM`` as a prunable
    type is refused at config time, the variant ``lstm_lm_lstm_prunable``)."""
    return LstmLM(num_classes)


class TiedBlock(nn.Module):
    """Pre-norm causal self-attention (separate q/k/v Linears) and an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.norm1(x)
        q, k, v = (
            f(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for f in (self.q, self.k, self.v)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TiedLM(nn.Module):
    def __init__(self, vocab: int, context: int, dim: int = 32, depth: int = 2, heads: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, context, dim))
        self.blocks = nn.ModuleList(TiedBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight  # weight tying (Press & Wolf 2017)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx) + self.pos[:, : idx.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def tied_lm(num_classes: int, context: int) -> nn.Module:
    """A small causal transformer LM whose output layer's weight IS the embedding's:
    ``self.head.weight = self.emb.weight`` (one Parameter, two modules)."""
    return TiedLM(num_classes, context)


class InplaceReluMLP(nn.Module):
    def __init__(self, inputs: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def inplace_relu_mlp(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """An image MLP (hidden 64, 64) with ``nn.ReLU(inplace=True)`` after each hidden
    Linear: the ReLU overwrites the Linear's output tensor, the one a forward hook on
    the Linear was given."""
    return InplaceReluMLP(in_channels * image_size**2, num_classes)


class ControlFlowMLP(nn.Module):
    def __init__(self, inputs: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.abs().mean() > 0:  # data-dependent: torch.fx cannot trace this
            x = x / x.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.out(x)


def control_flow_mlp(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """An image MLP whose forward branches on the data (``if x.abs().mean() > 0``), so
    ``torch.fx.symbolic_trace`` raises a TraceError."""
    return ControlFlowMLP(in_channels * image_size**2, num_classes)


# ------------------------------------------------- what a researcher tries next (variants)


class Logits(nn.Module):
    """A Hugging Face model whose forward returns the logits tensor, not a ModelOutput:
    the usual workaround when a tool expects ``model(x)`` to be a tensor."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(x).logits


def hf_gpt2_logits(num_classes: int, context: int) -> nn.Module:
    """:func:`hf_gpt2` (tied) returning ``.logits``."""
    return Logits(hf_gpt2(num_classes, context))


def hf_gpt2_untied_logits(num_classes: int, context: int) -> nn.Module:
    """:func:`hf_gpt2` with ``tie_word_embeddings=False``, returning ``.logits``: gets past
    both the ModelOutput and the tied weights, to the Conv1D layers."""
    return Logits(hf_gpt2(num_classes, context, tie=False))


def hf_llama_logits(num_classes: int, context: int) -> nn.Module:
    return Logits(hf_llama(num_classes, context))


def hf_vit_logits(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return Logits(hf_vit(num_classes, in_channels, image_size))


def hf_bert_logits(num_classes: int, context: int) -> nn.Module:
    """:func:`hf_bert` (tied) returning ``.logits``."""
    return Logits(hf_bert(num_classes, context))


def hf_bert_untied_logits(num_classes: int, context: int) -> nn.Module:
    return Logits(hf_bert(num_classes, context, tie=False))


FACTORIES = (
    "hf_gpt2",
    "hf_llama",
    "hf_vit",
    "hf_bert",
    "pyg_gcn",
    "pyg_gat",
    "lstm_lm",
    "tied_lm",
    "inplace_relu_mlp",
    "control_flow_mlp",
)

# ------------------------------------------------------------------------------ configs

# Settings every config shares: one CPU thread, one level of 50 %, one pretrain and one
# train epoch, small analysis subsets (the runtime analysis is not a default analysis:
# its settings serve `prunescope runtime`).
_TINY_ANALYSIS = """
[analysis.zeroing]
test_subset = {zeroing}
batch_size = {zeroing}

[analysis.similarity]
test_subset = {analysis}
batch_size = {analysis}

[analysis.connectivity]
points = 3
bn_images = {analysis}
test_subset = {analysis}
batch_size = {analysis}

[analysis.export]
test_subset = {analysis}

[analysis.runtime]
batch_sizes = [1]
repetitions = 3
warmup = 1
"""


def _config(model: str, data: str, train: str, imp: str, *, zeroing: int, analysis: int) -> str:
    return (
        f'seed = 0\ndevice = "cpu"\nthreads = 1\n\n{model.strip()}\n\n{data.strip()}\n\n'
        f"{train.strip()}\n\n{imp.strip()}\n"
        + _TINY_ANALYSIS.format(zeroing=zeroing, analysis=analysis)
    )


_TEXT_DATA = """
[data]
name = "shakespeare_char"
root = ""
context = 32
train_subset = 512
test_subset = 64
"""

_TEXT_TRAIN = """
[train]
optimizer = "adamw"
batch_size = 64
eval_batch_size = 64
lr = 2e-3
weight_decay = 0.1
schedule = "cosine"
"""

_IMAGE_DATA = """
[data]
name = "digits"
train_subset = 512
test_subset = 128
"""

_IMAGE_TRAIN = """
[train]
batch_size = 64
eval_batch_size = 128
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
schedule = "cosine"
"""

_GRAPH_DATA = """
[data]
name = "sbm"
"""

_GRAPH_TRAIN = """
[train]
optimizer = "adamw"
lr = 0.01
weight_decay = 5e-4
schedule = "constant"
"""


def _imp(types: list[str] | None = None) -> str:
    text = "[imp]\nlevels = 1\nrate = 0.5\npretrain_epochs = 1\ntrain_epochs = 1\n"
    if types:
        text += "prunable_types = [" + ", ".join(f'"{t}"' for t in types) + "]\n"
    return text


def _model(factory: str, stages: dict[str, list[str]]) -> str:
    lines = [f'[model]\nname = "byo_models:{factory}"\n\n[model.stages]']
    for stage, patterns in stages.items():
        lines.append(f"{stage} = [" + ", ".join(f'"{p}"' for p in patterns) + "]")
    return "\n".join(lines)


def _text(factory: str, stages: dict[str, list[str]], types: list[str] | None = None) -> str:
    return _config(
        _model(factory, stages), _TEXT_DATA, _TEXT_TRAIN, _imp(types), zeroing=4, analysis=32
    )


def _image(factory: str, stages: dict[str, list[str]]) -> str:
    return _config(
        _model(factory, stages), _IMAGE_DATA, _IMAGE_TRAIN, _imp(), zeroing=32, analysis=64
    )


def _graph(factory: str, stages: dict[str, list[str]]) -> str:
    # a graph is one batch: the subsets of the analyses do not apply to its nodes
    return _config(
        _model(factory, stages),
        _GRAPH_DATA,
        _GRAPH_TRAIN,
        _imp(["torch_geometric.nn.dense.linear.Linear"]),
        zeroing=64,
        analysis=64,
    )


_GPT2_STAGES = {"block0": ["transformer.h.0"], "block1": ["transformer.h.1"], "head": ["lm_head"]}
_BERT_STAGES = {
    "block0": ["bert.encoder.layer.0"],
    "block1": ["bert.encoder.layer.1"],
    "head": ["cls"],
}
_CONV1D = ["transformers.pytorch_utils.Conv1D"]

CONFIGS: dict[str, str] = {
    # GPT-2: Conv1D layers listed as prunable; the tied lm_head is the last prunable
    # layer, so imp.exclude leaves it (and so the tied wte) dense by default
    "hf_gpt2": _text("hf_gpt2", _GPT2_STAGES, _CONV1D),
    "hf_llama": _text(
        "hf_llama",
        {"block0": ["model.layers.0"], "block1": ["model.layers.1"], "head": ["lm_head"]},
    ),
    "hf_vit": _image(
        "hf_vit",
        {
            "embed": ["vit.embeddings"],
            "block0": ["vit.layers.0"],
            "block1": ["vit.layers.1"],
            "head": ["classifier"],
        },
    ),
    "hf_bert": _text("hf_bert", _BERT_STAGES),
    "pyg_gcn": _graph("pyg_gcn", {"layer1": ["conv1"], "out": ["conv2"]}),
    "pyg_gat": _graph("pyg_gat", {"layer1": ["conv1"], "out": ["conv2"]}),
    "lstm_lm": _text("lstm_lm", {"proj": ["proj"], "head": ["head"]}),
    "tied_lm": _text(
        "tied_lm",
        {"block0": ["blocks.0"], "block1": ["blocks.1"], "head": ["head"]},
    ),
    "inplace_relu_mlp": _image(
        "inplace_relu_mlp", {"hidden1": ["net.1"], "hidden2": ["net.3"], "out": ["net.5"]}
    ),
    "control_flow_mlp": _image(
        "control_flow_mlp", {"hidden1": ["fc1"], "hidden2": ["fc2"], "out": ["out"]}
    ),
}

assert set(CONFIGS) == set(FACTORIES)


def _prefixed(stages: dict[str, list[str]], prefix: str) -> dict[str, list[str]]:
    return {stage: [f"{prefix}{p}" for p in pats] for stage, pats in stages.items()}


# What a researcher tries after the first failure: the Hugging Face models wrapped to
# return ``.logits`` (tied as built, and untied), and the LSTM listed as a prunable type
# (refused at config time: it has no single weight).
VARIANTS: dict[str, str] = {
    "hf_gpt2_logits": _text("hf_gpt2_logits", _prefixed(_GPT2_STAGES, "hf."), _CONV1D),
    "hf_gpt2_untied_logits": _text(
        "hf_gpt2_untied_logits", _prefixed(_GPT2_STAGES, "hf."), _CONV1D
    ),
    "hf_llama_logits": _text(
        "hf_llama_logits",
        {
            "block0": ["hf.model.layers.0"],
            "block1": ["hf.model.layers.1"],
            "head": ["hf.lm_head"],
        },
    ),
    "hf_vit_logits": _image(
        "hf_vit_logits",
        {
            "embed": ["hf.vit.embeddings"],
            "block0": ["hf.vit.layers.0"],
            "block1": ["hf.vit.layers.1"],
            "head": ["hf.classifier"],
        },
    ),
    "hf_bert_logits": _text("hf_bert_logits", _prefixed(_BERT_STAGES, "hf.")),
    "hf_bert_untied_logits": _text("hf_bert_untied_logits", _prefixed(_BERT_STAGES, "hf.")),
    "lstm_lm_lstm_prunable": _text(
        "lstm_lm", {"rnn": ["rnn"], "proj": ["proj"], "head": ["head"]}, ["torch.nn.LSTM"]
    ),
}
