"""An export folder on disk (docs/formats.md, "The export folder"): written whole or not at all, read without trusting it.

``prunescope export`` writes ``model.safetensors``, ``architecture.json`` and
``export.json`` into a hidden folder beside ``--out`` and renames it into place, so a
killed export leaves no half-written ``--out`` that a rerun would refuse.

An export may come from someone else. :func:`load_exported` reads it as data:

- only regular files, never more than a cap (a FIFO or ``/dev/zero`` is refused, not read);
- ``architecture.json`` against a schema (types, positive widths, a model name);
- a user model's code only when the caller vouches for it (:mod:`prunescope.trust`);
- the network is first built on PyTorch's ``meta`` device (no memory) and its every tensor
  shape compared with the safetensors header, so a 60-byte ``architecture.json`` that
  declares huge layers is refused before anything is allocated (measured before this
  check: 2.5–4.4 GB allocated, then an error).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from prunescope.errors import RunDirError, UserInputError, first_problem, shorten
from prunescope.rundir.files import (
    NotARegularFile,
    check_not_symlink,
    read_regular,
    regular_file_size,
)
from prunescope.trust import opened_data_folder, trusting

ARCHITECTURE = "architecture.json"
EXPORT = "export.json"
MODEL = "model.safetensors"

MAX_JSON_BYTES = 16 << 20  # VGG16's architecture.json is 4 kB; its export.json 9 kB
MAX_WIDTH = 1 << 24  # no layer of any network we know has 16M channels or features
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on a header

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LayerWidths(_Strict):
    type: Literal["Conv2d", "Linear"]
    in_: Width = Field(alias="in")
    out: Width
    bias: bool


class NormWidths(_Strict):
    type: Literal["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]
    features: Width


class Architecture(BaseModel):
    """``architecture.json``: the model and the inputs it was built for, and the widths."""

    model_config = ConfigDict(extra="ignore")  # ModelInputs may grow; unknown keys are left

    name: str = Field(min_length=1, max_length=200)
    modules: dict[str, Annotated[LayerWidths | NormWidths, Field(discriminator="type")]]
    num_classes: Width = 10
    in_channels: Width = 3
    image_size: Annotated[int, Field(ge=0, le=1 << 16)] = 32
    context: Width | None = None
    features: Width | None = None

    def model_inputs(self) -> dict[str, Any]:
        from prunescope.models.registry import ModelInputs

        names = {f.name for f in dataclasses.fields(ModelInputs)} - {"graph"}
        return {k: v for k, v in self.model_dump().items() if k in names and v is not None}


# -- writing -----------------------------------------------------------------------------


def check_export_target(out: Path) -> None:
    """``--out`` must be new or an empty real folder (checked before any work, and again
    before the rename)."""
    check_not_symlink(out, "an export")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"--out {out} exists and is not an empty folder; choose a new one")


def write_export_folder(out: Path, files: dict[str, bytes]) -> None:
    """The files, written into a new folder beside ``out`` and renamed to ``out`` (which
    must be new or an empty real folder): whole or nothing."""
    out = Path(out)
    check_export_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        for name, data in files.items():
            with open(partial / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(partial, out)  # an empty folder is replaced; a full one was refused above
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# -- reading -----------------------------------------------------------------------------


def _read(folder: Path, name: str, limit: int | None) -> bytes:
    """The file's bytes (at most ``limit``), or with ``limit=None`` only the check that it is
    a regular file."""
    path = folder / name
    try:
        if limit is None:
            regular_file_size(path)
            return b""
        data = read_regular(path, limit)
    except FileNotFoundError:
        raise RunDirError(f"{folder} is not a prunescope export (no {name})") from None
    except NotARegularFile:
        raise RunDirError(f"{path} is not a regular file; it is not read") from None
    except OSError as exc:
        raise RunDirError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise RunDirError(f"{path} is larger than any file prunescope writes ({limit:,} bytes)")
    return data


def read_architecture(folder: Path) -> Architecture:
    data = _read(folder, ARCHITECTURE, MAX_JSON_BYTES)
    try:
        return Architecture.model_validate(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{folder / ARCHITECTURE} is not JSON ({shorten(exc, 80)})") from None
    except ValidationError as exc:
        raise RunDirError(f"{folder / ARCHITECTURE}: {first_problem(exc, 'the file')}") from None


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The safetensors header of a regular file: each tensor's shape (nothing allocated)."""
    from safetensors import SafetensorError, safe_open

    _read(path.parent, path.name, None)  # a regular file, or one line (never a FIFO's hang)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunDirError(f"{path} is not a safetensors file ({shorten(exc, 80)})") from None


def _built(arch: Architecture) -> nn.Module:
    from prunescope.export import resize
    from prunescope.models.registry import ModelInputs, build_for

    model = build_for(arch.name, ModelInputs(**arch.model_inputs()))
    resize(model, {k: v.model_dump(by_alias=True) for k, v in arch.modules.items()})
    return model


def check_shapes(folder: Path, arch: Architecture, shapes: dict[str, tuple[int, ...]]) -> None:
    """The network ``architecture.json`` declares, built on the meta device, must hold the
    tensors of ``model.safetensors`` key for key and shape for shape."""
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in _built(arch).state_dict().items()}
    wrong = sorted(k for k in set(want) | set(shapes) if want.get(k) != shapes.get(k))
    if wrong:
        k = wrong[0]
        raise RunDirError(
            f"{folder}: {ARCHITECTURE} and {MODEL} disagree ({k}: {want.get(k, 'absent')} "
            f"declared, {shapes.get(k, 'absent')} stored; {len(wrong)} tensor(s) differ)"
        )


def load_exported(folder: str | Path, *, trust_code: bool = False) -> nn.Module:
    """The exported network (eval mode, CPU), built from ``architecture.json`` and loaded from
    ``model.safetensors``. No code from the folder runs; a user model's code runs only with
    ``trust_code=True`` (or when this process's own config names it)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"{folder} is not a prunescope export (no such folder)")
    with trusting(trust_code):
        opened_data_folder(folder)
        arch = read_architecture(folder)
        check_shapes(folder, arch, tensor_shapes(folder / MODEL))
        model = _built(arch)
    try:
        model.load_state_dict(load_file(folder / MODEL))
    except (OSError, ValueError, RuntimeError) as exc:
        raise RunDirError(f"{folder / MODEL} cannot be loaded ({shorten(exc, 160)})") from None
    bad = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise RunDirError(f"{folder / MODEL} holds NaN or infinite values (in {bad[0]})")
    return model.eval()
