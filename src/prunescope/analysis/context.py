"""What every analysis reads from a run directory: config, levels, models, test images."""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict

import torch
from torch import nn

from prunescope.api import model_for, read_level, test_images
from prunescope.config import Config
from prunescope.data import PreparedData, prepare_from_config
from prunescope.models import stage_of_layer
from prunescope.models.build import layer_groups
from prunescope.models.layers import adapter_for
from prunescope.pruning.masks import Masks
from prunescope.rundir.data_check import check_data
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import read_metrics
from prunescope.seeding import derive_seed
from prunescope.training.precision import has_fast_bf16, resolve_precision

log = logging.getLogger("prunescope")
_SAID: set[str] = set()


def trained_precision(manifest: dict) -> str | None:
    """The precision the run's completed levels were trained in, as their records say
    (``levels[k]["precision"]``, written by IMP.save_level); None for a run made before
    they recorded it. Levels trained in different precisions (a run resumed on another
    machine) are analysed in fp32, which is at least as exact as either."""
    found = {
        record.get("precision")
        for record in (manifest.get("levels") or {}).values()
        if record.get("status") == "complete"
    } - {None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else "fp32"


def analysis_precision(manifest: dict, setting: str, device: torch.device) -> str:
    """The forward passes' precision: the one the levels were trained in, so that an
    analysis measures the network that was trained (an ``auto`` run trained in bf16 on a
    GPU and analysed on a CPU stays bf16, and the other way round). Runs that never
    recorded it resolve ``setting`` on ``device``, as they did when they trained."""
    recorded = trained_precision(manifest)
    if recorded is None:
        return resolve_precision(setting, device)
    if recorded == "bf16" and not has_fast_bf16(device):
        message = (
            f"the levels were trained in bf16: analysing them in bf16 on {device.type}, "
            f"which has no fast bf16 (slower, but the numbers match the training)"
        )
        if message not in _SAID:
            _SAID.add(message)
            log.info("%s", message)
    return recorded


class AnalysisContext:
    def __init__(self, rd: RunDir, cfg: Config, device: torch.device):
        self.rd = rd
        self.cfg = cfg
        self.device = device
        # every analysis runs its forward passes in the precision the run trained in
        self.precision = analysis_precision(rd.manifest, cfg.train.precision, device)
        skeleton = model_for(cfg)
        self.stages: dict[str, list[str]] = dict(skeleton.stages)
        self.stage_of = stage_of_layer(skeleton)
        self.groups = layer_groups(skeleton)  # across stages: a transformer's attention, MLP
        self.layers = list(self.stage_of)
        modules = dict(skeleton.named_modules())
        # where each layer keeps its neurons (GPT-2's Conv1D weights are [in, out])
        self.adapters = {layer: adapter_for(modules[layer]) for layer in self.layers}
        # docs/guide.md ("The analyses"): zeroing and similarity cover the layers IMP prunes; an excluded
        # classifier's output neurons are the class logits, whose ablation says
        # nothing about the structure pruning leaves and would dominate the spread.
        excluded = set(cfg.imp.exclude or ())
        self.prunable_layers = [name for name in self.layers if name not in excluded]
        self._models: OrderedDict[int, tuple[nn.Module, Masks]] = OrderedDict()

    @functools.cached_property
    def data(self) -> PreparedData:
        data = prepare_from_config(self.cfg)
        check_data(self.rd, data)  # never analyse a run on images it was not trained on
        return data

    def levels(self) -> list[int]:
        return self.rd.completed_levels()

    def metrics(self, level: int) -> dict:
        return read_metrics(self.rd, level)

    def network_sparsity(self, level: int) -> float:
        return float(self.metrics(level)["network_sparsity"])

    def level(self, level: int) -> tuple[nn.Module, Masks]:
        """Model of a level in eval mode on the analysis device (a few kept in memory)."""
        if level not in self._models:
            model, masks = read_level(self.rd, self.cfg, level)
            self._models[level] = (model.to(self.device), masks)
            while len(self._models) > 3:
                self._models.popitem(last=False)
        self._models.move_to_end(level)
        return self._models[level]

    def state(self, level: int) -> dict[str, torch.Tensor]:
        """The level's trained state (CPU), checked like every read of a level."""
        model, _ = self.level(level)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def rewind_state(self) -> dict[str, torch.Tensor]:
        """The rewind point's state (CPU): every level starts from it (docs/guide.md, "IMP as implemented")."""
        from prunescope.rundir.layout import REWIND
        from prunescope.rundir.level_files import read_state

        return read_state(self.rd, REWIND, model_for(self.cfg))

    def fresh_model(self) -> nn.Module:
        """A model of the run's architecture on the analysis device, to load states into."""
        return model_for(self.cfg).to(self.device).eval()

    def train_batches(self, n: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed subset of ``n`` training examples (stratified where examples have one
        class; no augmentation), batched as the model takes them."""
        x, y = self.data.subset("train", n, derive_seed(self.cfg.seed, "train-subset"))
        return list(self.data.loader(x, y, batch_size, self.device))

    def batches(
        self, subset: int | None, batch_size: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Test batches on the device: the run's test set or its analysis subset."""
        x, y = test_images(self.data, self.cfg, subset)
        return list(self.data.loader(x, y, batch_size, self.device))
