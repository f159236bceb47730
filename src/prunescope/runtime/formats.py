"""The inference formats a pruned level is timed in.

``dense``: the masked network as trained (channels_last for convolutions, as training on a
CPU uses); ``sparse``: every pruned layer's weight a CSR matrix (BSR with 8×8 blocks is
timed per layer where the shape divides); ``exported``: the structured export (physically
smaller, dense); ``hybrid``: per stage, the faster of dense and sparse by the per-layer
measurements (the paper's dense-early/sparse-late proposal, decided by measurement);
``onnxruntime``: the dense network run by ONNX Runtime, the engine a deployment would use
(optional: ``pip install 'prunescope[runtime]'``).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.runtime.sparse_layers import sparse_version

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FormatInputs:
    """What a format is built from: the masked model, its export (None where the export
    refused), the layers with a sparse version, the per-stage hybrid choice, the batch (in
    the model's memory format: ``xd``) and the threads."""

    model: nn.Module
    exported: nn.Module | None
    layers: list[str]
    choice: dict[str, str]
    x: torch.Tensor
    xd: torch.Tensor
    threads: int


Built = tuple["nn.Module | None", Runner, torch.Tensor]  # (module, runner, its input)


@dataclass(frozen=True)
class RuntimeFormat:
    name: str
    description: str
    build: Callable[[FormatInputs], Built | None]  # None: not available for this level
    style: tuple[str, str]  # the run-time figure's line style and marker
    devices: tuple[str, ...] = ("cpu", "cuda")
    optional: bool = False  # needs a package that `auto` leaves out when missing


FORMATS: dict[str, RuntimeFormat] = {}


def register_format(fmt: RuntimeFormat) -> RuntimeFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"runtime format {fmt.name!r} registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def replace_modules(
    model: nn.Module, make: dict[str, Callable[[nn.Module], nn.Module]]
) -> nn.Module:
    """A copy of ``model`` with the named modules replaced by ``make[name](module)``."""
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    for name, build in make.items():
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else out, attr, build(modules[name]))
    return out


def channels_last(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def dense_format(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model).eval()
    return out.to(memory_format=torch.channels_last) if channels_last(out) else out


def sparse_format(model: nn.Module, layers: list[str], layout: str = "csr") -> nn.Module:
    return replace_modules(model, {layer: lambda m: sparse_version(m, layout) for layer in layers})


def choose_hybrid(
    layer_ms: dict[str, dict[str, float]], stage_of: dict[str, str]
) -> dict[str, str]:
    """Per stage, the format whose layers take less time in all (ties: dense): layer -> format.

    ``layer_ms[layer][format]`` are the per-layer latencies measured for ``dense`` and
    ``sparse``."""
    totals: dict[str, dict[str, float]] = {}
    for layer, times in layer_ms.items():
        t = totals.setdefault(stage_of[layer], {"dense": 0.0, "sparse": 0.0})
        for fmt in ("dense", "sparse"):
            t[fmt] += times[fmt]
    pick = {
        stage: ("sparse" if t["sparse"] < t["dense"] else "dense") for stage, t in totals.items()
    }
    return {layer: pick[stage_of[layer]] for layer in layer_ms}


def hybrid_format(model: nn.Module, choice: dict[str, str]) -> nn.Module:
    sparse = [layer for layer, fmt in choice.items() if fmt == "sparse"]
    return sparse_format(model, sparse)


class FormatUnavailable(Exception):
    """A format this model cannot be run in; the measurement leaves it out, saying why."""


def onnx_runner(model: nn.Module, example: torch.Tensor, threads: int) -> Runner:
    """The dense network exported to ONNX and run by ONNX Runtime on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserInputError(
            "format onnxruntime needs ONNX Runtime: pip install 'prunescope[runtime]'"
        ) from None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                copy.deepcopy(model).eval().cpu(),
                (example.cpu(),),
                buf,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            )
        except Exception as exc:  # e.g. a sparse adjacency (GCN): ONNX has no sparse matmul
            raise FormatUnavailable(f"cannot export the model to ONNX ({exc})") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": x.cpu().numpy()})[0])

    return run


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer, counting a sparse tensor's values and indices."""
    total = 0
    for m in model.modules():
        for t in [*m.parameters(recurse=False), *m.buffers(recurse=False), *_sparse_weights(m)]:
            total += _tensor_bytes(t)
    return total


def _sparse_weights(m: nn.Module) -> list[torch.Tensor]:
    w = getattr(m, "weight", None)
    return (
        [w]
        if isinstance(w, torch.Tensor)
        and not isinstance(w, nn.Parameter)
        and w.layout != torch.strided
        else []
    )


def _tensor_bytes(t: torch.Tensor) -> int:
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = [t.values(), t.crow_indices(), t.col_indices()]
        return sum(p.numel() * p.element_size() for p in parts)
    return t.numel() * t.element_size()


def _exported(f: FormatInputs) -> Built | None:
    if f.exported is None:
        return None
    e = dense_format(f.exported)
    return e, e, f.xd


def _onnx(f: FormatInputs) -> Built | None:
    from prunescope.models.probe import samples_independent

    # a graph model reads every node at once: its example is the whole graph
    example = f.x[:1] if samples_independent(f.model, f.x) else f.x
    return None, onnx_runner(f.model, example, f.threads), f.x


def _same(module: nn.Module, x: torch.Tensor) -> Built:
    return module, module, x


register_format(
    RuntimeFormat(
        "dense",
        "the masked network as trained (channels_last convolutions)",
        lambda f: _same(dense_format(f.model), f.xd),
        ("-", "o"),
    )
)
register_format(
    RuntimeFormat(
        "sparse",
        "every pruned layer's weight a CSR matrix (layers without a sparse version dense)",
        lambda f: _same(sparse_format(f.model, f.layers), f.x),
        ("-", "o"),
    )
)
register_format(
    RuntimeFormat(
        "exported",
        "the structured export: physically smaller, dense",
        _exported,
        ("--", "s"),
    )
)
register_format(
    RuntimeFormat(
        "hybrid",
        "per stage, the faster of dense and sparse by the per-layer timings",
        lambda f: _same(hybrid_format(f.model, f.choice), f.x),
        ("-.", "^"),
    )
)
register_format(
    RuntimeFormat(
        "onnxruntime",
        "the dense network in ONNX Runtime (pip install 'prunescope[runtime]')",
        _onnx,
        (":", "D"),
        devices=("cpu",),
        optional=True,
    )
)
