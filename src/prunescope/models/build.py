"""The model a config describes: built for its data, with the config's stages, groups and
prunable types applied and checked (docs/guide.md, "Bring your own model")."""

from __future__ import annotations

import torch
from torch import nn

from prunescope.models.layers import check_prunable, declare
from prunescope.models.probe import return_logits
from prunescope.models.registry import ModelInputs, build_for, is_user_model, prunable_layers
from prunescope.models.user import (
    check_declared_stages,
    layers_by_pattern,
    refuse_fused_attention,
    resolve_types,
)
from prunescope.seeding import derive_seed


def model_from_config(cfg, inputs: ModelInputs) -> nn.Module:  # cfg: prunescope.config.Config
    model = build_for(cfg.model.name, inputs, init=cfg.model.init)
    configure(model, cfg)
    return model


def new_model(cfg, inputs: ModelInputs, purpose: str = "init") -> nn.Module:
    """The model at initialisation: a pure function of the config's seed (and of ``purpose``,
    so that a control can draw another initialisation from the same seed)."""
    torch.manual_seed(derive_seed(cfg.seed, purpose))
    return model_from_config(cfg, inputs)


def configure(model: nn.Module, cfg) -> None:
    """Extra prunable types (each layer checked for a weight with a neuron axis), refused
    fused attention, a ``ModelOutput`` read as its logits, stages and layer groups."""
    for name, axes in cfg.imp.neuron_axes.items():
        (kind,) = resolve_types([name])
        declare(kind, weight_axis=axes.weight, output_axis=axes.output)
    extra = resolve_types(cfg.imp.prunable_types)
    if extra:
        model.prunable_types = tuple(getattr(model, "prunable_types", ())) + extra
    refuse_fused_attention(model, cfg.imp.exclude or ())
    return_logits(model)
    layers = prunable_layers(model)
    modules = dict(model.named_modules())
    for name in layers:
        check_prunable(name, modules[name])
    if cfg.model.stages:
        model.stages = layers_by_pattern(
            model, cfg.model.stages, layers, section="model.stages", cover=True
        )
    elif is_user_model(cfg.model.name) or extra:
        model.stages = check_declared_stages(model, layers)
    if cfg.model.groups:
        model.layer_groups = layers_by_pattern(
            model, cfg.model.groups, layers, section="model.groups", cover=False
        )


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Layer groups across stages (a transformer's attention vs MLP layers), if declared."""
    return dict(getattr(model, "layer_groups", None) or {})
