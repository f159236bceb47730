"""Several runs in one report: labelled by the settings that differ between them.

"resnet20, 10 ep/level" says nothing when two runs differ in their pretraining
epochs; a label made of the keys that actually differ ("imp.pretrain_epochs=5")
always tells the lines apart.
"""

from __future__ import annotations

from pathlib import Path

from prunescope.config import Config
from prunescope.config.load import flatten

# Where and how fast a run ran, and how it is analysed or reported, are not settings of
# the experiment: they never label a run, and replicates may differ in them (a thread
# count or compiled kernels change float summation order, as a seed's noise does).
NOT_LABELS = (
    "data.root",
    "data.download",
    "device",
    "threads",
    "train.compile",
    "train.capture",
    "train.checkpoint_every",
    "track.tensorboard",
    "train.eval_batch_size",
)
NOT_LABEL_PREFIXES = ("analysis.", "report.")


def differing_keys(cfgs: list[Config]) -> list[str]:
    flat = [flatten(c.model_dump(mode="json")) for c in cfgs]
    keys = sorted({k for f in flat for k in f})
    return [
        k
        for k in keys
        if k not in NOT_LABELS
        and not k.startswith(NOT_LABEL_PREFIXES)
        and len({repr(f.get(k)) for f in flat}) > 1
    ]


def _value(v: object) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def run_labels(paths: list[Path], cfgs: list[Config]) -> list[str]:
    """One label per run: its differing settings, else its folder name."""
    if len(cfgs) == 1:
        return [Path(paths[0]).resolve().name]
    keys = differing_keys(cfgs)
    flat = [flatten(c.model_dump(mode="json")) for c in cfgs]
    labels = [", ".join(f"{k}={_value(f.get(k))}" for k in keys) for f in flat]
    if not keys or len(set(labels)) < len(labels):
        names = [Path(p).resolve().name for p in paths]
        labels = [f"{n}: {lab}" if lab else n for n, lab in zip(names, labels, strict=True)]
    return labels
