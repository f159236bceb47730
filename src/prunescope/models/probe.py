"""The model a researcher brings, checked on a real batch before anything trains.

A config check cannot see what a forward pass returns. One forward on a few examples of
the run's own data does, at config time:

- the output: a tensor of logits ``[*labels, classes]``, or an object with ``.logits``
  (Hugging Face's ``ModelOutput``), which a forward hook installed on every configured
  model turns into the tensor (:func:`return_logits`); anything else is one line, exit 2;
- the classifier left dense by default: the prunable layer whose output *is* the model's
  output, in the order the forward runs (not the order modules were registered), else the
  last prunable layer the forward runs (:func:`output_layer`);
- whether samples are independent (a batch's first half gives the same outputs alone),
  which the fast zeroing engine needs (:func:`samples_independent`); a graph's nodes see
  each other, a BatchNorm in training mode mixes a batch.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.errors import UserInputError, shorten
from prunescope.models.registry import prunable_layers


def _logits(_module: nn.Module, _inputs: object, out: object) -> object:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else out


def return_logits(model: nn.Module) -> None:
    """Make ``model(x)`` return the logits tensor of a ``ModelOutput`` (once per model)."""
    if not getattr(model, "_prunescope_logits_hook", False):
        model.register_forward_hook(_logits)
        model._prunescope_logits_hook = True


def check_output(out: object, labels: torch.Tensor, classes: int, name: str) -> torch.Tensor:
    """``out`` must be logits ``[*labels.shape, classes]``."""
    if not isinstance(out, torch.Tensor):
        raise UserInputError(
            f"model {name!r} returns a {type(out).__name__}, not a tensor of logits (nor an "
            f"object with a .logits tensor); return the logits from forward"
        )
    want = (*labels.shape, classes)
    if tuple(out.shape) != want:
        raise UserInputError(
            f"model {name!r} returns logits of shape {tuple(out.shape)} for labels of shape "
            f"{tuple(labels.shape)}; this task needs {want} ({classes} classes)"
        )
    if not out.is_floating_point():
        raise UserInputError(f"model {name!r} returns {out.dtype} values, not logits")
    return out


@torch.no_grad()
def forward_once(model: nn.Module, x: torch.Tensor, name: str) -> object:
    try:
        return model(x)
    except Exception as exc:  # the user's forward may raise anything
        raise UserInputError(
            f"model {name!r} fails on a batch of the run's data ({type(exc).__name__}: "
            f"{shorten(str(exc).splitlines()[0] if str(exc) else '', 160)})"
        ) from None


@torch.no_grad()
def output_layer(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The prunable layer whose output is the model's output (the last one that runs, if
    none is): the classifier that ``imp.exclude`` leaves dense by default."""
    modules = dict(model.named_modules())
    ran: list[tuple[str, torch.Tensor]] = []
    handles = [
        modules[n].register_forward_hook(
            lambda _m, _i, o, n=n: ran.append((n, o)) if isinstance(o, torch.Tensor) else None
        )
        for n in prunable_layers(model)
    ]
    try:
        final = model(x)
    finally:
        for h in handles:
            h.remove()
    for name, out in reversed(ran):
        if out.shape == getattr(final, "shape", None) and torch.equal(out, final):
            return [name]
    return [ran[-1][0]] if ran else []


@torch.no_grad()
def samples_independent(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the first half of a batch gives the same outputs alone (eval mode). A model
    may say so itself with a ``samples_independent`` attribute."""
    declared = getattr(model, "samples_independent", None)
    if declared is not None:
        return bool(declared)
    if len(x) < 2:
        return True
    half = len(x) // 2
    try:
        whole, alone = model(x), model(x[:half])
    except Exception:  # a model that takes only whole batches (a graph's node set)
        return False
    if not isinstance(whole, torch.Tensor) or not isinstance(alone, torch.Tensor):
        return False
    if whole.shape[1:] != alone.shape[1:] or len(whole) != len(x):
        return False
    return torch.allclose(whole[:half].float(), alone.float(), rtol=1e-4, atol=1e-5)
