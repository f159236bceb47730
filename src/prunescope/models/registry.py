"""The model registry: each architecture registers itself with its classifier and stages."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.inits import INITS

# docs/guide.md ("Bring your own model"): a prunable layer is a Linear or a convolution (plus the types a model lists
# in its ``prunable_types`` attribute, which ``imp.prunable_types`` fills); a neuron is an
# output unit of one.
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """What a factory may ask for, by parameter name: a factory declares the ones it needs."""

    num_classes: int = 10  # classes; the vocabulary size for a language model
    in_channels: int = 3
    image_size: int = 32
    context: int | None = None  # tokens per sequence (language models)
    features: int | None = None  # input features per node (graphs)
    graph: torch.Tensor | None = None  # normalised sparse adjacency (graphs)

    def arguments_for(self, factory: Callable[..., nn.Module]) -> dict[str, object]:
        """The inputs ``factory`` declares (all of them when it takes ``**kwargs``)."""
        params = inspect.signature(factory).parameters.values()
        every = {f.name: getattr(self, f.name) for f in fields(self)}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return every
        return {p.name: every[p.name] for p in params if p.name in every}

    def recordable(self) -> dict[str, int]:
        """The inputs as JSON (the graph is data, not architecture: it is left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "graph" and getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    classifier: tuple[str, ...]
    min_image_size: int
    # what `prunescope models` builds it for, and says so
    example: ModelInputs = field(default_factory=ModelInputs)
    example_label: str = "CIFAR-10"


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    description: str,
    classifier: tuple[str, ...],
    min_image_size: int = 8,
    example: ModelInputs | None = None,
    example_label: str = "CIFAR-10",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator for a factory taking any of :class:`ModelInputs`' fields by name.

    ``classifier`` names the final layer(s): the default of ``imp.exclude``.
    """

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(
            name,
            factory,
            description,
            classifier,
            min_image_size,
            example or ModelInputs(),
            example_label,
        )
        return factory

    return wrap


def model_names() -> list[str]:
    return list(_REGISTRY)


def is_user_model(name: str) -> bool:
    """``package.module:factory`` names a user's factory (docs/guide.md, "Bring your own model")."""
    return ":" in name


def model_spec(name: str) -> ModelSpec:
    if is_user_model(name):
        from prunescope.models.user import user_spec

        return user_spec(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(
            f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}, or name your own "
            f"factory as package.module:function"
        ) from None


def prunable_types(model: nn.Module) -> tuple[type, ...]:
    return PRUNABLE_TYPES + tuple(getattr(model, "prunable_types", ()))


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of every prunable module (Linear, Conv*, the model's extra types), in
    ``named_modules`` order; not those inside an ``nn.MultiheadAttention`` (its fused
    projections are one unit that :mod:`prunescope.models.user` refuses or leaves dense),
    nor a layer whose weight is an earlier prunable layer's (tied: one tensor, one mask)."""
    types = prunable_types(model)
    fused = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    out, weights = [], set()
    for n, m in model.named_modules():
        if not isinstance(m, types) or any(n.startswith(f"{f}.") for f in fused):
            continue
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor):
            if id(w) in weights:
                continue  # tied to an earlier layer's weight: pruned (and counted) once, there
            weights.add(id(w))
        out.append(n)
    return out


def check_stages(model: nn.Module) -> None:
    """Every prunable module belongs to exactly one stage (a built-in model's own check)."""
    stages: dict[str, list[str]] = model.stages
    listed = [layer for layers in stages.values() for layer in layers]
    layers = prunable_layers(model)
    if sorted(listed) != sorted(layers) or len(set(listed)) != len(listed):
        missing = sorted(set(layers) - set(listed))
        extra = sorted(set(listed) - set(layers))
        raise AssertionError(
            f"stage map of {type(model).__name__} is wrong: missing {missing}, unknown {extra}"
        )


def build_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    init: str = "fan_out",
    **inputs: object,
) -> nn.Module:
    """Build a registered model. Its ``stages`` attribute maps stage name to layer names.

    ``inputs``: the other :class:`ModelInputs` (``context``, ``features``, ``graph``).
    """
    return build_for(
        name,
        ModelInputs(num_classes, in_channels, image_size, **inputs),  # type: ignore[arg-type]
        init=init,
    )


def build_for(name: str, inputs: ModelInputs, *, init: str = "fan_out") -> nn.Module:
    spec = model_spec(name)
    if inputs.image_size < spec.min_image_size:
        raise UserInputError(
            f"model {name!r} needs images of at least {spec.min_image_size}px, got "
            f"{inputs.image_size}px (set data.image_size)"
        )
    model = spec.factory(**inputs.arguments_for(spec.factory))
    if not is_user_model(name):
        check_stages(model)  # a user's model is checked against its config (models/user.py)
    if init != "fan_out":  # the built-in models initialise themselves by fan-out
        reinitialise(model, init)
    return model


def reinitialise(model: nn.Module, init: str) -> None:
    """``fan_in``: He-normal convolutions scaled by fan-in (as OpenLTH); ``torch_default``:
    every Conv/Linear/BatchNorm as PyTorch creates it (Kaiming-uniform, a=√5), what code that
    does not initialise explicitly trains from."""
    if init not in INITS:
        raise UserInputError(f"unknown model.init {init!r}; choose one of {', '.join(INITS)}")
    for m in model.modules():
        if init == "torch_default" and isinstance(
            m, nn.modules.conv._ConvNd | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d
        ):
            m.reset_parameters()
        elif init == "fan_in" and isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def init_conv_bn(model: nn.Module) -> None:
    """He init for convolutions, identity for normalisation: the usual CIFAR recipe."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def stage_of_layer(model: nn.Module) -> dict[str, str]:
    return {layer: stage for stage, layers in model.stages.items() for layer in layers}


__all__ = [
    "ModelInputs",
    "ModelSpec",
    "build_for",
    "build_model",
    "check_stages",
    "count_parameters",
    "init_conv_bn",
    "model_names",
    "model_spec",
    "prunable_layers",
    "register_model",
    "stage_of_layer",
]
