"""Config: presets, files, --set overrides, resolution, and one clear line per bad field."""

from __future__ import annotations

import pytest

from prunescope.cli import main
from prunescope.config import (
    build_config,
    config_differences,
    config_from_toml_text,
    config_to_toml,
    preset_names,
)
from prunescope.config.load import parse_override
from prunescope.errors import ConfigError


def config_error(**kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(**kw)
    return info.value.lines


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["imp.rat=0.3"], "unknown config key 'imp.rat' (did you mean 'imp.rate'?)"),
        (["trian.lr=0.3"], "unknown config key 'trian'"),
        (["analysis.zeroing.mod=1"], "did you mean 'analysis.zeroing.mode'?"),
        (["imp.rate=0"], "imp.rate = 0: Input should be greater than 0"),
        (["imp.rate=1"], "imp.rate = 1: Input should be less than 1"),
        (["imp.rate=1.5"], "imp.rate = 1.5: Input should be less than 1"),
        (["imp.rate=fast"], "imp.rate = 'fast': Input should be a valid number"),
        (
            ["imp.train_epochs=-3"],
            "imp.train_epochs = -3: Input should be greater than or equal to 1",
        ),
        (
            ["imp.pretrain_epochs=-1"],
            "imp.pretrain_epochs = -1: Input should be greater than or equal to 0",
        ),
        (["imp.levels=500"], "imp.levels = 500: Input should be less than or equal to 60"),
        (
            ["imp.rewind=middle"],
            "imp.rewind = 'middle': Input should be 'weights', 'init', 'lr' or 'finetune'",
        ),
        (["imp.scope=local"], "imp.scope = 'local': Input should be 'global' or 'layerwise'"),
        (["imp.exclude=fc"], "imp.exclude = 'fc': Input should be a valid list"),
        (
            ["model.name=resnet21"],
            "model.name = 'resnet21': unknown model 'resnet21'; choose one of",
        ),
        (["data.name=mnist"], "data.name = 'mnist': unknown dataset 'mnist'; choose one of"),
        (["data.train_subset=0"], "data.train_subset = 0: Input should be greater than 0"),
        (["train.batch_size=0"], "train.batch_size = 0: Input should be greater than 0"),
        (["train.lr=-0.1"], "train.lr = -0.1: Input should be greater than 0"),
        (["train.momentum=1"], "train.momentum = 1: Input should be less than 1"),
        (
            ["train.schedule=linear"],
            "train.schedule = 'linear': Input should be 'cosine', 'step' or 'constant'",
        ),
        (["train.milestones=[50, 20]"], "milestones must be positive and strictly increasing"),
        (
            [
                "train.schedule=step",
                "train.milestones=[200]",
                "imp.train_epochs=10",
                "imp.pretrain_epochs=1",
            ],
            "train.milestones [200] lie at or past the end of the schedule (11 epochs)",
        ),
        (["device=gpu"], "device = 'gpu': device must be auto, cpu, cuda, cuda:N or mps"),
        (["seed=-1"], "seed = -1: Input should be greater than or equal to 0"),
        (
            ["analysis.weights.min=5", "analysis.weights.max=1"],
            "weights.max (1.0) must exceed weights.min (5.0)",
        ),
        (
            ["analysis.similarity.metrics=['cosine', 'l2']"],
            "Input should be 'cosine', 'cosine_per_neuron' or 'cka'",
        ),
        (["report.critical_margin=2"], "report.critical_margin = 2: Input should be less than 1"),
    ],
)
def test_each_bad_value_gives_one_line(overrides, expected):
    lines = config_error(overrides=overrides)
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert "\n" not in lines[0]


def test_several_bad_fields_give_one_line_each():
    lines = config_error(overrides=["imp.rate=3", "train.lr=0", "imp.bogus=1"])
    assert len(lines) == 3
    assert any(line.startswith("imp.rate") for line in lines)
    assert any(line.startswith("train.lr") for line in lines)
    assert any("imp.bogus" in line for line in lines)


def test_unknown_preset():
    (line,) = config_error(preset="quick")
    assert "unknown preset 'quick' (did you mean 'quickstart'?)" in line


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[imp\nrate = 0.2\n")
    (line,) = config_error(config_file=bad)
    assert line.startswith(f"{bad}: not valid TOML")
    (line,) = config_error(config_file=tmp_path / "missing.toml")
    assert "does not exist" in line
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    (line,) = config_error(config_file=binary)
    assert "cannot be read" in line


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("--set", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("imp..rate=3", "is not a dotted key"),
    ],
)
def test_malformed_set_items(item, expected):
    (line,) = config_error(
        overrides=[item.removeprefix("--set")] if item != "--set" else ["imp.rate"]
    )
    assert expected in line


def test_set_into_a_value_is_refused():
    (line,) = config_error(overrides=["imp.rate=0.2", "imp.rate.x=1"])
    assert "imp.rate is a value, not a section" in line


def test_set_values_are_read_as_toml_else_string():
    assert parse_override("imp.rate=0.2") == (["imp", "rate"], 0.2)
    assert parse_override('imp.exclude=["fc"]') == (["imp", "exclude"], ["fc"])
    assert parse_override("train.nesterov=true") == (["train", "nesterov"], True)
    assert parse_override("data.root=/data/cifar") == (["data", "root"], "/data/cifar")
    assert parse_override("model.name=resnet20") == (["model", "name"], "resnet20")
    assert parse_override('model.name="resnet20"') == (["model", "name"], "resnet20")


def test_layering_preset_file_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[imp]\nlevels = 3\nrate = 0.3\n")
    cfg = build_config(preset="quickstart", config_file=None, overrides=["imp.levels=2"])
    assert (cfg.model.name, cfg.data.name, cfg.imp.levels, cfg.imp.rate) == (
        "resnet8",
        "digits",
        2,
        0.4,
    )
    cfg = build_config(config_file=f, overrides=["imp.levels=5"])
    assert (cfg.imp.levels, cfg.imp.rate, cfg.model.name) == (5, 0.3, "resnet20")


def test_resolution_writes_out_model_dependent_defaults():
    cfg = build_config(overrides=["model.name=vgg16"])
    assert cfg.imp.exclude == ["classifier.fc3"]
    assert cfg.data.image_size == 32
    cfg = build_config(preset="quickstart")
    assert cfg.imp.exclude == ["fc"]
    assert cfg.data.image_size == 16
    cfg = build_config(overrides=["imp.exclude=[]"])
    assert cfg.imp.exclude == []


def test_resolved_config_round_trips_through_toml():
    cfg = build_config(preset="cpu-resnet20-cifar10", overrides=["imp.levels=3"])
    text = config_to_toml(cfg)
    zeroing = text.split("[analysis.zeroing]")[1].split("\n[")[0]
    assert "test_subset = 500" in zeroing and "# test_subset: not set" not in zeroing  # set here
    assert "exclude = [" in text
    again = config_from_toml_text(text, "config.toml")
    assert again == cfg
    assert config_differences(cfg, again) == []
    other = build_config(preset="cpu-resnet20-cifar10", overrides=["imp.levels=4", "seed=3"])
    assert config_differences(cfg, other) == ["imp.levels", "seed"]


def test_unset_optional_keys_are_listed_as_comments():
    text = config_to_toml(build_config(preset="quickstart"))
    assert "# train_subset: not set" in text


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_valid(name):
    cfg = build_config(preset=name)
    assert cfg.imp.levels >= 1
    if name.startswith("paper-"):
        assert (cfg.imp.levels, cfg.imp.rate, cfg.imp.pretrain_epochs, cfg.imp.train_epochs) == (
            18,
            0.2,
            5,
            150,
        )


def test_cli_config_errors_exit_2_with_one_line_each(capsys):
    code = main(["train", "--preset", "quickstart", "--set", "imp.rate=7", "--out", "unused"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "prunescope: config error: imp.rate = 7: Input should be less than 1"
    ]


def test_cli_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "quickstart"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err
