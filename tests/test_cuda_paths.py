"""The CUDA paths, checked on a machine without a GPU (issue #22).

No CUDA runtime here, so each test puts the code where a GPU run would: fake CUDA tensors
(``FakeTensorMode``), the ``meta`` device (a meta tensor meeting a CPU tensor fails as a
CUDA tensor meeting one does), monkeypatched ``torch.cuda`` queries, a fake ``pynvml`` and
recorders in place of ``torch.distributed``'s collectives.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import types

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from imp_helpers import tiny_config
from prunescope import distributed, export, runner
from prunescope.analysis import context as context_mod
from prunescope.analysis.context import AnalysisContext
from prunescope.errors import UserInputError
from prunescope.pruning.masks import dense_masks
from prunescope.rundir.layout import RunDir
from prunescope.runtime import measure
from prunescope.runtime.analysis import synthetic_state
from prunescope.structure import Consumer
from prunescope.training import objective
from prunescope.training import precision as precision_mod


@pytest.fixture
def two_ranks(monkeypatch):
    """This process as rank 0 of 2, before any device is bound."""
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(0, 2))
    monkeypatch.setattr(distributed, "_COLLECTIVE", None, raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


# -- 1. broadcasts go over the process group's device -------------------------------------------


def test_broadcast_tensors_travel_on_the_collective_device(two_ranks, monkeypatch):
    """A CUDA run's masks are CPU tensors (dense_masks, the level files), and NCCL has no
    CPU tensors: each must be copied to the rank's GPU for the broadcast. The meta device
    stands in for the GPU (fake CUDA tensors cannot be copied to in a CPU-only torch)."""
    seen = []
    gpu = torch.device("meta")
    monkeypatch.setattr(distributed, "collective_device", lambda: gpu, raising=False)
    monkeypatch.setattr(torch.distributed, "broadcast", lambda t, src=0, **kw: seen.append(t))
    with FakeTensorMode():
        model = nn.Conv2d(2, 3, 3, device=gpu)
        masks = dense_masks(model, ["weight"])
        assert masks["weight"].device.type == "cpu"  # as level 0 and the followers make them
        state = model.state_dict()
        state["weight"] = state["weight"].contiguous(memory_format=torch.channels_last)
        distributed.broadcast_tensors(state)
        distributed.broadcast_tensors(masks)
        assert masks["weight"].device.type == "cpu"  # written back where it lives
    assert len(seen) == 3
    assert {t.device for t in seen} == {gpu}
    assert all(t.is_contiguous() and t.dtype != torch.bool for t in seen)


@pytest.mark.parametrize(
    ("backend", "want"), [("nccl", "cuda:0"), ("gloo", "cpu"), ("cpu:gloo,cuda:nccl", "cpu")]
)
def test_an_unbound_rank_collects_where_its_group_can(two_ranks, monkeypatch, backend, want):
    """Before bind() (a group someone else formed): an NCCL-only group carries CUDA tensors
    only, on the current GPU; a group with gloo carries CPU tensors."""
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: backend)
    assert str(distributed.collective_device()) == want


def test_broadcast_tensors_writes_rank_0s_values_back(monkeypatch):
    """What the collective received (here: rank 0's ones) lands in the caller's tensors,
    bool masks and channels_last weights included."""
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 2))
    monkeypatch.setattr(distributed, "_COLLECTIVE", None, raising=False)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "gloo")
    monkeypatch.setattr(torch.distributed, "broadcast", lambda t, src=0, **kw: t.fill_(1))
    conv = nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
    nn.init.zeros_(conv.weight)
    masks = {"weight": torch.zeros(3, 2, 3, 3, dtype=torch.bool)}
    distributed.broadcast_tensors(dict(conv.state_dict(keep_vars=True)))
    distributed.broadcast_tensors(masks)
    assert bool((conv.weight == 1).all()) and bool(masks["weight"].all())


# -- 5. the configured device decides each rank's device and backend ----------------------------


@pytest.mark.parametrize(
    ("setting", "cuda", "rank", "want"),
    [
        ("cpu", True, 1, ("gloo", "cpu")),
        ("cpu", False, 0, ("gloo", "cpu")),
        ("auto", False, 1, ("gloo", "cpu")),
        ("auto", True, 1, ("nccl", "cuda:1")),
        ("cuda", True, 3, ("nccl", "cuda:3")),
    ],
)
def test_each_rank_gets_its_backend_and_device(setting, cuda, rank, want):
    backend, device = distributed.plan_device(setting, cuda, rank)
    assert (backend, str(device)) == want


@pytest.mark.parametrize(("setting", "cuda"), [("cuda:1", True), ("cuda", False)])
def test_a_device_no_rank_can_use_is_one_line(setting, cuda):
    with pytest.raises(UserInputError) as err:
        distributed.plan_device(setting, cuda, 0)
    assert "\n" not in str(err.value) and setting.split(":")[0] in str(err.value)


def test_the_process_group_carries_cpu_tensors_on_a_gpu_host(two_ranks, monkeypatch):
    """The config (and so its device) is not known when the group forms, so a GPU host's
    group must serve a cpu run too: gloo for CPU tensors and objects, NCCL for CUDA ones."""
    backends = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda b=None, **k: backends.append(b)
    )
    distributed.init()
    assert backends == ["cpu:gloo,cuda:nccl"]


@pytest.mark.parametrize(("setting", "want"), [("cpu", "cpu"), ("cuda", "cuda:1")])
def test_a_follower_trains_on_the_configured_device(two_ranks, monkeypatch, setting, want):
    """Rank 1 on a 2-GPU host: ``device = "cpu"`` stays on the CPU (and its collectives
    with it); ``cuda`` is this rank's own GPU, cuda:LOCAL_RANK."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen, trained_on = [], []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    cfg = tiny_config(f"device={setting}").model_dump(mode="json")
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj=None: cfg)
    monkeypatch.setattr(runner, "apply_threads", lambda n: 1)

    class Follower:
        def __init__(self, _cfg, device):
            trained_on.append(str(device))

        def follow(self):
            return None

    monkeypatch.setattr(runner, "Follower", Follower)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    runner.follow_run()
    assert trained_on == [want]
    assert chosen == ([] if setting == "cpu" else [want])
    assert str(distributed.collective_device()) == want


# -- 2. export: folded constants live on the reader's device -----------------------------------


class OneDevice(TorchDispatchMode):
    """CUDA's rule, on any device: the tensors of an op share one device, but for CPU
    scalars (0-dim) and explicit copies. Needed with the meta device, which lets an in-place
    ``cpu_tensor += meta_tensor`` pass silently where a CUDA tensor would fail."""

    COPIES = (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.COPIES:
            devices = {
                t.device
                for t in tree_leaves((args, kwargs))
                if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)
            }
            if len(devices) > 1:
                raise RuntimeError(f"{func}: tensors on {sorted(map(str, devices))}")
        return func(*args, **kwargs)


def test_the_device_rule_catches_an_in_place_mix():
    with OneDevice(), pytest.raises(RuntimeError, match="meta"):
        torch.zeros(4).add_(torch.ones(4, device="meta"))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_folded_constants_follow_the_readers_device_and_dtype(monkeypatch, bias, kind):
    # meta tensors hold no values: say that the folded sum is nonzero, so a reader without
    # a bias gets one
    monkeypatch.setattr(export, "_any_nonzero", lambda t: True, raising=False)
    if kind == "linear":
        reader = nn.Linear(6, 4, bias=bias, device="meta", dtype=torch.bfloat16)
        consumer = Consumer("reader", span=2)
    else:
        reader = nn.Conv2d(3, 4, 1, bias=bias, device="meta", dtype=torch.bfloat16)
        consumer = Consumer("reader", span=1)
    with OneDevice(), torch.no_grad():  # no_grad: as build_smaller calls it
        export._fold(reader, consumer, [(0, 2.5), (1, 0.0), (2, -1.0)])
    assert reader.bias.device.type == "meta"
    assert reader.bias.dtype == torch.bfloat16 and reader.bias.shape == (4,)


# -- 3. runtime: synthetic levels are made on the state's device -------------------------------


def test_synthetic_levels_stay_on_the_states_device():
    state = {
        "a.weight": torch.empty(4, 3, device="meta"),
        "a.bias": torch.empty(4, device="meta"),
        "b.weight": torch.empty(2, 4, device="meta"),
    }
    out = synthetic_state(state, ["a.weight", "b.weight"], 0.9)
    assert {v.device.type for v in out.values()} == {"meta"}


# -- 4. auto precision: bf16 only on a GPU with bf16 tensor cores -------------------------------


def test_auto_is_bf16_only_on_the_runs_gpu_of_compute_capability_8(monkeypatch):
    """A V100 (7.0) as cuda:0 beside an A100 (8.0) as cuda:1, the A100 current: torch's
    is_bf16_supported() says yes (emulation, current device) and is no longer asked."""
    capability = {0: (7, 0), 1: (8, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_capability",
        lambda d=None: capability[d if isinstance(d, int) else torch.device(d).index],
    )
    resolve = precision_mod.resolve_precision
    assert resolve("auto", torch.device("cuda", 0)) == "fp32"
    assert resolve("auto", torch.device("cuda", 1)) == "bf16"
    assert resolve("auto", torch.device("cuda")) == "bf16"  # no index: the current GPU
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve("auto", torch.device("cuda")) == "fp32"
    assert resolve("bf16", torch.device("cuda", 0)) == "bf16"  # asked for: honoured


# -- 7. analyses run in the precision the levels were trained in -------------------------------


def run_dir_trained_in(tmp_path, *precisions: str | None) -> RunDir:
    rd = RunDir(tmp_path)
    levels = {}
    for k, p in enumerate(precisions):
        levels[f"{k:02d}"] = {"status": "complete", **({"precision": p} if p else {})}
    rd.manifest = {"levels": levels, "sessions": [{"precision": precisions[-1]}]}
    return rd


@pytest.mark.parametrize(("trained", "fast"), [("bf16", False), ("fp32", True)])
def test_analyses_use_the_precision_the_levels_were_trained_in(
    tmp_path, monkeypatch, caplog, trained, fast
):
    """An ``auto`` run trained in bf16 on a GPU and analysed on a CPU without fast bf16 stays
    bf16 (said once); one trained in fp32 is not analysed in bf16 on a machine that has it."""
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: fast)
    monkeypatch.setattr(context_mod, "_SAID", set(), raising=False)
    rd = run_dir_trained_in(tmp_path, trained, trained)
    cfg = tiny_config("train.precision=auto")
    with caplog.at_level(logging.INFO, logger="prunescope"):
        for _ in range(2):
            assert AnalysisContext(rd, cfg, torch.device("cpu")).precision == trained
    said = [r for r in caplog.records if "trained in bf16" in r.getMessage()]
    assert len(said) == (1 if trained == "bf16" else 0)


@pytest.mark.parametrize(("recorded", "want"), [((None, None), "bf16"), (("bf16", "fp32"), "fp32")])
def test_analysis_precision_of_old_and_mixed_runs(tmp_path, monkeypatch, recorded, want):
    """A run made before levels recorded their precision resolves ``auto`` here (this CPU:
    fast bf16); levels trained in different precisions are analysed in fp32."""
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: True)
    rd = run_dir_trained_in(tmp_path, *recorded)
    got = context_mod.analysis_precision(rd.manifest, "auto", torch.device("cpu"))
    assert got == want


# -- 6. NVML energy: the run's GPU, over a window of calls --------------------------------------


class Clock:
    """Virtual seconds: a fake GPU call takes exactly ``step``."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def fake_pynvml(clock: Clock, gpus: list[tuple[str, float, int]]) -> types.ModuleType:
    """NVML of a machine whose GPUs are (uuid, watts, joules at driver load), in NVML's
    (PCI) order; each energy counter moves every 100 ms, in whole mJ, as NVML's does."""
    by_uuid = {uuid: (watts, base) for uuid, watts, base in gpus}
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i][0]

    def by_uuid_handle(uuid):
        if uuid not in by_uuid:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return uuid

    def energy_mj(handle):
        watts, base = by_uuid[handle]
        ticks = math.floor(clock.now / 0.1 + 1e-9)
        return round(1000 * (base + watts * 0.1 * ticks))

    m.nvmlDeviceGetHandleByUUID = by_uuid_handle
    m.nvmlDeviceGetTotalEnergyConsumption = energy_mj
    return m


def test_nvml_reads_the_gpu_torch_runs_on(monkeypatch):
    """CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is NVML's GPU 1 (busy, 300 W), not its GPU 0
    (idle); the counters started at 1000 J and 5000 J when the driver loaded."""
    clock = Clock()
    nvml = fake_pynvml(clock, [("GPU-aaaa-0000", 40.0, 1000.0), ("GPU-bbbb-1111", 300.0, 5000.0)])
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    props = {0: types.SimpleNamespace(name="busy", uuid="bbbb-1111", major=9, minor=0)}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    read = measure.nvml_reader(torch.device("cuda", 0))
    assert read is not None and read() == pytest.approx(5000.0 + 300.0 * 0.1 * 10000)


def test_energy_is_measured_over_a_window_of_calls(monkeypatch):
    """Calls of 2 ms at 300 W cost 0.6 J each. Read around single calls, a counter that moves
    every 100 ms gives 0 or 30 J; over half a second of calls, from one of its updates to
    another, it gives 0.6 J per call."""
    clock = Clock()
    nvml = fake_pynvml(clock, [("GPU-bbbb-1111", 300.0, 5000.0)])
    monkeypatch.setattr(measure, "time", clock, raising=False)
    clock.now += 0.0371  # anywhere between two updates

    def call(_x):
        clock.now += 0.002

    start = clock.now
    seconds, joules = measure.time_interleaved(
        {"dense": call},
        torch.zeros(1),
        repetitions=20,
        warmup=1,
        energy=lambda: nvml.nvmlDeviceGetTotalEnergyConsumption("GPU-bbbb-1111") / 1e3,
    )
    assert len(seconds["dense"]) == 20
    assert joules["dense"] == pytest.approx(300.0 * 0.002, rel=0.02)
    assert clock.now - start >= 0.5  # the window was at least half a second of calls


# -- 8. unequal shards: the gradient of the whole batch ----------------------------------------


def test_unequal_shards_average_to_the_one_process_gradient(two_ranks, monkeypatch):
    """7 examples (one ignored) on 2 ranks: rank 0 scores 4 of rows 0,2,4,6, rank 1 scores 2
    of rows 1,3,5. Weighting each rank's mean-loss gradient by its count gives the gradient
    of the whole batch's mean loss; a plain mean over ranks does not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    y[1] = objective.IGNORE

    def backward(rows: slice) -> nn.Module:
        m = copy.deepcopy(net)
        objective.loss(m(x[rows]), y[rows]).backward()
        return m

    whole = backward(slice(None))
    ranks = [backward(slice(r, None, 2)) for r in range(2)]
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "gloo")
    slots: dict[int, torch.Tensor] = {}
    meet = threading.Barrier(2, timeout=10)

    def all_reduce(t, op=None, **kw):  # a sum over the two "ranks" (threads)
        slots[threading.get_ident()] = t.clone()
        meet.wait()
        t.copy_(sum(slots.values()))
        meet.wait()

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    errors = []

    def rank(r: int) -> None:
        try:
            distributed.average_gradients(ranks[r], objective.scored(y[r::2]))
        except BaseException as exc:
            errors.append(exc)
            meet.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for m in ranks:
        for got, want in zip(m.parameters(), whole.parameters(), strict=True):
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-6)


def test_the_trainer_weights_its_shard_by_its_scored_examples(monkeypatch):
    """The count average_gradients weights by is the shard's scored examples (ignored
    labels, e.g. a graph's nodes outside the split, do not count)."""
    from prunescope.data import prepare_from_config
    from prunescope.models import build_model
    from prunescope.training import trainer as trainer_mod

    seen = []
    monkeypatch.setattr(
        trainer_mod, "average_gradients", lambda model, scored=None: seen.append(scored)
    )
    cfg = tiny_config("train.precision=fp32", "data.train_subset=128")
    data = prepare_from_config(cfg)
    model = build_model(cfg.model.name, 10, 1, data.image_size)
    trainer = trainer_mod.Trainer(model, cfg, data, torch.device("cpu"), total_epochs=1)
    x, y = next(iter(trainer.train_loader.epoch(0)))
    y = y.clone()
    y[:3] = objective.IGNORE
    trainer._forward_backward(trainer.model, x, y)
    assert len(seen) == 1 and int(seen[0]) == len(y) - 3
