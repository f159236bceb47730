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

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.runtime.sparse_layers import sparse_version

FORMATS = ("dense", "sparse", "exported", "hybrid", "onnxruntime")

Runner = Callable[[torch.Tensor], torch.Tensor]


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
