"""A user's own model (docs/guide.md, "Bring your own model"): ``model.name = "package.module:factory"``, its stages
from ``[model.stages]`` patterns or its ``stages`` attribute, extra prunable types.

Every mistake here is one line that names what to change (exit 2), not a traceback.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.models.probe import output_layer
from prunescope.models.registry import ModelSpec
from prunescope.trust import check_home, import_trusted, require_trusted


def import_object(path: str, what: str) -> object:
    """``package.module:attribute`` (or ``package.module.attribute``), imported only when the
    person running the command vouches for it (:mod:`prunescope.trust`)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise UserInputError(f"{what} {path!r} must look like package.module:name")
    require_trusted(path, what)  # every time: the import below is cached
    check_home(path, module_name, what)
    return _imported(path, module_name, attr, what)


@functools.lru_cache(maxsize=16)
def _imported(path: str, module_name: str, attr: str, what: str) -> object:
    try:
        module = import_trusted(path, module_name, what)
    except UserInputError:
        raise
    except Exception as exc:  # the user's module may raise anything while importing
        raise UserInputError(
            f"{what} {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc}); "
            f"is its folder on PYTHONPATH?"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserInputError(f"{what} {path!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def checked_factory(path: str) -> Callable[..., nn.Module]:
    factory = import_object(path, "model.name")
    if not callable(factory):
        raise UserInputError(f"model.name {path!r} is a {type(factory).__name__}, not a function")

    @functools.wraps(factory)
    def build(**inputs: object) -> nn.Module:
        try:
            model = factory(**inputs)
        except Exception as exc:
            raise UserInputError(
                f"model.name {path!r} raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(model, nn.Module):
            raise UserInputError(
                f"model.name {path!r} returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    return build


def user_spec(path: str) -> ModelSpec:
    return ModelSpec(
        name=path,
        factory=checked_factory(path),
        description=f"your model, from {path}",
        classifier=(),  # decided on the built model: see default_classifier
        min_image_size=0,
    )


def default_classifier(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The layers ``imp.exclude`` leaves dense by default: the model's ``classifier_layers``
    attribute (names) if it has one, else the prunable layer that produces its output on
    ``x`` (the paper never prunes the output layer; :func:`~prunescope.models.probe.output_layer`)."""
    declared = getattr(model, "classifier_layers", None)
    if declared is not None:
        return list(declared)
    return output_layer(model.eval(), x)


def resolve_types(names: Iterable[str]) -> tuple[type, ...]:
    types = []
    for name in names:
        obj = import_object(name, "imp.prunable_types entry")
        if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
            raise UserInputError(f"imp.prunable_types entry {name!r} is not an nn.Module class")
        types.append(obj)
    return tuple(types)


def refuse_fused_attention(model: nn.Module, exclude: Iterable[str]) -> None:
    """``nn.MultiheadAttention`` keeps q, k and v in one ``in_proj_weight``, which is not a
    layer of neurons IMP could prune or the analyses ablate: refuse it unless excluded."""
    excluded = set(exclude)
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) and name not in excluded:
            raise UserInputError(
                f"module {name!r} is an nn.MultiheadAttention, whose query/key/value "
                f"projections are one fused in_proj_weight that cannot be pruned neuron by "
                f"neuron: build attention from separate nn.Linear layers (as the built-in "
                f"vit_tiny does), or add {name!r} to imp.exclude to leave it dense"
            )


def _contained(name: str, pattern: str) -> bool:
    """A layer matches a pattern that matches it or a module that contains it."""
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def layers_by_pattern(
    model: nn.Module,
    patterns: Mapping[str, list[str]],
    layers: list[str],
    *,
    section: str,
    cover: bool,
) -> dict[str, list[str]]:
    """Group ``layers`` by ``[model.stages]``-style patterns over ``named_modules()`` names.

    Every pattern must match a module; a layer may not be in two groups; with ``cover``
    every layer must be in one. Groups list their layers in network order.
    """
    names = [n for n, _ in model.named_modules() if n]
    for group, pats in patterns.items():
        for pat in pats:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                raise UserInputError(
                    f"{section}.{group}: pattern {pat!r} matches no module of "
                    f"{type(model).__name__} (its modules include {', '.join(names[:6])})"
                )
    out: dict[str, list[str]] = {group: [] for group in patterns}
    where: dict[str, str] = {}
    for layer in layers:
        for group, pats in patterns.items():
            if any(_contained(layer, p) for p in pats):
                if layer in where:
                    raise UserInputError(
                        f"layer {layer!r} is in two {section} entries, {where[layer]!r} and "
                        f"{group!r}; a layer belongs to one"
                    )
                where[layer] = group
                out[group].append(layer)
    missing = [layer for layer in layers if layer not in where]
    if cover and missing:
        raise UserInputError(
            f"layer {missing[0]!r} is in no stage of {section}"
            + (f" (nor are {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; add a pattern that matches it"
        )
    empty = [group for group, members in out.items() if not members]
    if empty:
        raise UserInputError(
            f"{section}.{empty[0]} matches no prunable layer (Linear, Conv or an "
            f"imp.prunable_types module)"
        )
    return out


def check_declared_stages(model: nn.Module, layers: list[str]) -> dict[str, list[str]]:
    """A model's own ``stages`` attribute, held to the same rules as config patterns."""
    stages = getattr(model, "stages", None)
    if not isinstance(stages, Mapping) or not stages:
        raise UserInputError(
            f"{type(model).__name__} has no stages attribute: set [model.stages] (stage name "
            f"= list of module-name patterns) in the config"
        )
    exact = {group: [f"{re_escape(n)}" for n in members] for group, members in stages.items()}
    return layers_by_pattern(model, exact, layers, section="the model's stages", cover=True)


def re_escape(name: str) -> str:
    """A module name as an fnmatch pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
