"""Device choice, and channels_last."""

from __future__ import annotations

import torch

from prunescope.errors import UserInputError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device {name!r} asked for, but this machine has no CUDA GPU")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserInputError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s) here"
            )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UserInputError("device 'mps' asked for, but MPS is not available here")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'' if n == 1 else 's'})"
    return device.type


def use_channels_last(device: torch.device, wanted: bool) -> bool:
    # Measured on 2 CPU cores too: ResNet20 training 1.2x, inference 1.3-1.6x faster
    # in channels_last (oneDNN); tiny models on 16px images are the exception.
    return wanted and device.type in ("cuda", "cpu")
