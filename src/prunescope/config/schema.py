"""The config schema: every key, its default and what it allows.

The resolved config (every default written out) is what a run records in
``config.toml``; pinned keys are listed in docs/formats.md ("Pinned names").
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prunescope.inits import INITS

# 0.8**k must stay representable and k levels must leave at least one weight in any
# realistic network: past ~60 levels of rate 0.2 fewer than 1e-6 of the weights remain.
MAX_LEVELS = 60


class Section(BaseModel):
    # Unknown keys are errors, not silently ignored: a typo in a long run's
    # config must not cost a day of GPU time.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    name: str = Field(
        "resnet20",
        description="a name from `prunescope models`, or your factory as package.module:function",
    )
    init: Literal[tuple(INITS)] = Field(  # type: ignore[valid-type]
        "fan_out",
        description="convolution init: He by fan-out (default), He by fan-in (OpenLTH), or "
        "PyTorch's default (what code without an explicit init gets)",
    )
    stages: dict[str, list[str]] | None = Field(
        None,
        description="stage name -> module-name patterns (fnmatch over named_modules); "
        "default: the model's own stages",
    )
    groups: dict[str, list[str]] | None = Field(
        None,
        description="layer groups across stages (e.g. attention vs mlp), as patterns; "
        "default: the model's own, if any",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        import re

        from prunescope.models import model_names

        if ":" in v:  # a user's factory: imported when the model is built (one-line errors)
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v):
                raise ValueError(f"{v!r} must look like package.module:function")
            return v
        if v not in model_names():
            raise ValueError(
                f"unknown model {v!r}; choose one of {', '.join(model_names())}, or name your "
                f"own factory as package.module:function"
            )
        return v

    @field_validator("stages", "groups")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if v is not None:
            empty = [name for name, pats in v.items() if not pats]
            if not v or empty:
                raise ValueError(
                    f"every entry needs at least one pattern (empty: {empty or 'all'})"
                )
        return v


class DataSection(Section):
    name: str = Field("cifar10", description="a name from `prunescope datasets`")
    root: str = Field("data", description="folder that holds the dataset")
    download: bool = Field(False, description="fetch the official archive when missing")
    train_subset: int | None = Field(None, gt=0, description="stratified seeded subset of train")
    test_subset: int | None = Field(None, gt=0, description="stratified seeded subset of test")
    image_size: int | None = Field(
        None, gt=0, le=512, description="resize images to this side (default: the dataset's)"
    )
    context: int | None = Field(
        None,
        gt=1,
        le=65536,
        description="tokens per sequence of a text dataset (default: the dataset's)",
    )

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from prunescope.data import dataset_names

        if v not in dataset_names():
            raise ValueError(f"unknown dataset {v!r}; choose one of {', '.join(dataset_names())}")
        return v


class TrainSection(Section):
    batch_size: int = Field(128, gt=0, le=65536, description="training examples per step")
    eval_batch_size: int = Field(
        1000, gt=0, le=65536, description="examples per forward pass when evaluating (speed only)"
    )
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="sgd (the paper's) or adamw (betas 0.9/0.999; momentum unused)"
    )
    lr: float = Field(0.1, gt=0, le=100, description="the learning rate at the schedule's peak")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: float = Field(5e-4, ge=0, lt=1, description="L2 weight decay (AdamW: decoupled)")
    schedule: Literal["cosine", "step", "constant"] = Field(
        "cosine",
        description="learning-rate schedule over pretraining and level training: cosine, step (gamma at milestones) or constant",
    )
    milestones: list[int] = Field(
        default_factory=list,
        description="step schedule: epochs (of the whole schedule) where lr *= gamma",
    )
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule: the factor at each milestone")
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear warm-up at the schedule's start, in epochs"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    epochs: int = Field(10, ge=1, description="epochs of `prunescope train` (dense training)")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "auto",
        description="bf16 autocast, fp32, or auto: bf16 where the device has fast bf16 "
        "(CUDA with bf16, CPUs with AMX or AVX-512 BF16), else fp32",
    )
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the training step: true, false, or auto"
    )
    capture: bool | Literal["auto"] = Field(
        "auto",
        description="the whole step on the device (forward, backward, masks, optimizer, "
        "learning rate, statistics), captured as a CUDA graph on CUDA: true, false, or "
        "auto (CUDA only; the same numbers as the eager loop, tested on a CPU)",
    )
    channels_last: bool = Field(True, description="channels_last memory format (CUDA and CPU)")
    checkpoint_every: int = Field(
        0, ge=0, description="epochs between mid-level checkpoints; 0 = about every 5 minutes"
    )

    @field_validator("compile", "capture", mode="before")
    @classmethod
    def _compile_choice(cls, v: object) -> object:
        if isinstance(v, bool) or v == "auto":
            return v
        if v in ("true", "false"):
            return v == "true"
        raise ValueError(f'must be true, false or "auto", got {v!r}')

    @model_validator(mode="before")
    @classmethod
    def _legacy_bf16(cls, data: object) -> object:
        # Configs written before train.precision had `bf16 = true|false`, which meant bf16
        # autocast on CUDA only: such a run trained in fp32 unless it ran on a GPU. Runs of
        # that version on a GPU said device = "cuda"; "auto" ones were CPU runs here.
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            bf16 = data.pop("bf16")
            data.setdefault("precision", "bf16" if bf16 and data.pop("_cuda", False) else "fp32")
        return data

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m <= 0 for m in v) or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"milestones must be positive and strictly increasing, got {v}")
        return v


class NeuronAxes(Section):
    weight: int = Field(0, ge=-8, le=7, description="axis of the weight that indexes neurons")
    output: int = Field(-1, ge=-8, le=7, description="axis of the output that does")


class ImpSection(Section):
    """``[imp]``; each pruning method's own settings are the section named after it
    (``imp.complete``, ``imp.group``), whose model the method registers with itself."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    levels: int = Field(18, ge=0, le=MAX_LEVELS, description="pruning levels after the dense one")
    rate: float = Field(
        0.2, gt=0, lt=1, description="fraction of the remaining weights pruned per level"
    )
    pretrain_epochs: int = Field(5, ge=0, description="epochs before the rewind point")
    train_epochs: int = Field(150, ge=1, description="epochs trained at every level")
    rewind: Literal["weights", "init", "lr", "finetune"] = Field(
        "weights",
        description="weights: rewind to the pretrain point (the paper); init: to the "
        "initialisation; lr: keep the trained weights, replay the lr schedule from the rewind "
        "epoch (Renda et al. 2020); finetune: keep them, train at the final lr",
    )
    exclude: list[str] | None = Field(
        None, description="module names never pruned (default: the model's classifier)"
    )
    scope: Literal["global", "layerwise"] = Field(
        "global",
        description="global: one magnitude ranking over the network (the paper); layerwise: each layer loses rate of its own weights",
    )
    method: str = Field("magnitude", description="a pruning method: magnitude, complete, group")
    prune_fanout: bool = Field(
        False, description="also prune what reads an emptied neuron, in the same budget"
    )
    prunable_types: list[str] = Field(
        default_factory=list,
        description="module types pruned besides Linear and Conv*, by dotted name "
        "(package.module:Class); each needs one weight tensor, read as a Linear's ([out, in], "
        "neurons last in the output) unless imp.neuron_axes says otherwise",
    )
    neuron_axes: dict[str, NeuronAxes] = Field(
        default_factory=dict,
        description="dotted type name -> {weight = axis of its weight that indexes neurons, "
        "output = axis of its output that does}; GPT-2's Conv1D is known ({weight = 1, "
        "output = -1})",
    )

    @model_validator(mode="before")
    @classmethod
    def _method_sections(cls, data: object) -> object:
        from prunescope.config.analysis_sections import method_sections

        return method_sections(data, set(cls.model_fields))

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from prunescope.errors import UserInputError
        from prunescope.pruning.registry import method

        try:
            method(v)  # one line naming the closest method when unknown
        except UserInputError as exc:  # as a validation error: one config-error line
            raise ValueError(
                str(exc).replace(f"unknown imp.method {v!r}", "unknown method")
            ) from None
        return v


class AnalysisSection(Section):
    """``[analysis]``: the user's plugins, and one section per registered analysis. Each
    analysis keeps its settings model beside its code (``AnalysisSpec.settings``), so a new
    analysis, a user's plugin included, brings its section with it."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    plugins: list[str] = Field(
        default_factory=list,
        description="modules that register your own analyses (docs/extending.md), imported "
        "only when you vouch for them, as a user model is",
    )

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: object) -> object:
        from prunescope.config.analysis_sections import analysis_sections

        return analysis_sections(data, set(cls.model_fields))


class ReportSection(Section):
    critical_margin: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="accuracy drop below the dense baseline that marks critical sparsity",
    )
    hist_sparsities: list[float] = Field(
        default_factory=lambda: [0.20, 0.59, 0.79, 0.89],
        description="network sparsities whose nearest levels the weight histograms show",
    )


class TrackSection(Section):
    # How a run is observed, not what it computes: it may change on a resume.
    tensorboard: bool = Field(
        False,
        description="write TensorBoard event files into RUN_DIR/tensorboard (per-epoch loss, "
        "accuracy and learning rate; per-level sparsity and test metrics; the report's "
        "headline numbers); needs the tensorboard package (pip install 'prunescope[track]')",
    )


class Config(Section):
    seed: int = Field(
        0,
        ge=0,
        lt=2**31,
        description="the one seed every draw derives from (init, data order, augmentation, dropout, subsets)",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    # On a busy machine, or several runs at once, 1 thread per process is faster: measured
    # on 2 cores under load, 2 threads per process were several times slower than 1.
    threads: int | None = Field(
        None, gt=0, le=4096, description="torch threads (default: every core the process may use)"
    )
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    imp: ImpSection = Field(default_factory=ImpSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    report: ReportSection = Field(default_factory=ReportSection)
    track: TrackSection = Field(default_factory=TrackSection)

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _legacy_cuda_bf16(cls, data: object) -> object:
        """Tell the legacy ``train.bf16`` migration whether the run was a CUDA run."""
        train = data.get("train") if isinstance(data, dict) else None
        if (
            isinstance(train, dict)
            and "bf16" in train
            and str(data.get("device")).startswith("cuda")
        ):
            data = {**data, "train": {**train, "_cuda": True}}
        return data

    @model_validator(mode="after")
    def _milestones_in_schedule(self) -> Config:
        total = max(self.imp.pretrain_epochs + self.imp.train_epochs, self.train.epochs)
        late = [m for m in self.train.milestones if m >= total]
        if self.train.schedule == "step" and late:
            raise ValueError(
                f"train.milestones {late} lie at or past the end of the schedule ({total} epochs)"
            )
        return self
