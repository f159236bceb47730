"""The model registry: each architecture registers itself with its classifier and stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from prunescope.errors import UserInputError

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    classifier: tuple[str, ...]
    min_image_size: int


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, description: str, classifier: tuple[str, ...], min_image_size: int = 8
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator for a factory ``f(num_classes, in_channels, image_size) -> nn.Module``.

    ``classifier`` names the final layer(s): the default of ``imp.exclude``.
    """

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, description, classifier, min_image_size)
        return factory

    return wrap


def model_names() -> list[str]:
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(
            f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}"
        ) from None


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of every Conv2d and Linear module, in ``named_modules`` order."""
    return [n for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


def check_stages(model: nn.Module) -> None:
    """Every Conv2d/Linear module belongs to exactly one stage, listed in network order."""
    stages: dict[str, list[str]] = model.stages
    listed = [layer for layers in stages.values() for layer in layers]
    layers = prunable_layers(model)
    if sorted(listed) != sorted(layers) or len(set(listed)) != len(listed):
        missing = sorted(set(layers) - set(listed))
        extra = sorted(set(listed) - set(layers))
        raise AssertionError(
            f"stage map of {type(model).__name__} is wrong: missing {missing}, unknown {extra}"
        )


# Initialisation schemes (model.init). IMP ranks magnitudes that, with an early rewind
# point, still carry the initial scale, so the scheme can decide which layers are pruned
# first: He init scaled by fan-out (this project's default, as torchvision's ResNets) gives
# the stem and stride-2 convolutions small weights; by fan-in (OpenLTH) it does not.
INITS = ("fan_out", "fan_in", "torch_default")


def build_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    init: str = "fan_out",
) -> nn.Module:
    """Build a registered model. Its ``stages`` attribute maps stage name to layer names."""
    spec = model_spec(name)
    if image_size < spec.min_image_size:
        raise UserInputError(
            f"model {name!r} needs images of at least {spec.min_image_size}px, got {image_size}px "
            f"(set data.image_size)"
        )
    model = spec.factory(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    check_stages(model)
    if init != "fan_out":  # the models initialise themselves by fan-out
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
            m, nn.Conv2d | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d
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
    "ModelSpec",
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
