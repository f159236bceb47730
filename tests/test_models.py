"""Models: forward shapes, stage maps, parameter counts, the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunescope import build_model
from prunescope.errors import UserInputError
from prunescope.models import count_parameters, model_names, prunable_layers, register_model

EXPECTED_STAGES = {
    "resnet8": ["stem", "stage1", "stage2", "stage3", "fc"],
    "resnet20": ["stem", "stage1", "stage2", "stage3", "fc"],
    "resnet32": ["stem", "stage1", "stage2", "stage3", "fc"],
    "resnet56": ["stem", "stage1", "stage2", "stage3", "fc"],
    "vgg16": ["block1", "block2", "block3", "block4", "block5", "fc"],
    "regnetx_200mf": ["stem", "stage1", "stage2", "stage3", "stage4", "fc"],
    "regnetx_200mf_nogroups": ["stem", "stage1", "stage2", "stage3", "stage4", "fc"],
}


# the models beyond CNNs, tested in test_any_model.py
NOT_CNNS = ("mlp", "vit_tiny", "gpt_char", "gcn")


def test_every_model_is_tested():
    assert sorted(model_names()) == sorted([*EXPECTED_STAGES, *NOT_CNNS])


@pytest.mark.parametrize("name", list(EXPECTED_STAGES))
@pytest.mark.parametrize(("size", "classes"), [(32, 10), (64, 200)])
def test_forward_shape(name, size, classes):
    model = build_model(name, num_classes=classes, in_channels=3, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, classes)


@pytest.mark.parametrize("name", list(EXPECTED_STAGES))
def test_stage_map_covers_every_prunable_layer_once_in_order(name):
    model = build_model(name)
    assert list(model.stages) == EXPECTED_STAGES[name]
    listed = [layer for layers in model.stages.values() for layer in layers]
    assert listed == prunable_layers(model)  # each once, in network order
    modules = dict(model.named_modules())
    assert all(isinstance(modules[layer], nn.Conv2d | nn.Linear) for layer in listed)


def test_stage_contents():
    r20 = build_model("resnet20")
    assert r20.stages["stem"] == ["conv1"] and r20.stages["fc"] == ["fc"]
    assert r20.stages["stage1"][:2] == ["layer1.0.conv1", "layer1.0.conv2"]
    assert "layer2.0.shortcut.0" in r20.stages["stage2"]  # 1x1 projection shortcut
    assert len(r20.stages["stage3"]) == 7
    vgg = build_model("vgg16")
    assert vgg.stages["block3"] == ["block3.conv1", "block3.conv2", "block3.conv3"]
    assert vgg.stages["fc"] == ["classifier.fc1", "classifier.fc2", "classifier.fc3"]
    reg = build_model("regnetx_200mf")
    assert [len(v) for v in reg.stages.values()] == [1, 4, 4, 13, 22, 1]
    assert dict(reg.named_modules())["stage4.0.conv2"].groups == 368 // 8


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("resnet20", 0.265e6, 0.275e6),  # the paper's "0.27 million"
        ("resnet32", 0.46e6, 0.47e6),
        ("resnet56", 0.85e6, 0.86e6),
        ("vgg16", 33.6e6, 33.7e6),  # the paper's "33.6 million"
        ("regnetx_200mf", 2.2e6, 2.4e6),
        ("regnetx_200mf_nogroups", 11.4e6, 11.6e6),
    ],
)
def test_parameter_counts_on_cifar10(name, low, high):
    assert low <= count_parameters(build_model(name)) <= high


def test_exact_counts_worked_out_by_hand():
    # ResNet20: stem 432 + BN 32; stage1 6 convs of 16*16*9 + 6 BN(16)
    # stage2: 16*32*9 + 5*32*32*9 + 1x1 16*32 + 7 BN(32); stage3 likewise with 32/64; fc 64*10+10.
    stem = 3 * 16 * 9 + 32
    s1 = 6 * 16 * 16 * 9 + 6 * 32
    s2 = 16 * 32 * 9 + 5 * 32 * 32 * 9 + 16 * 32 + 7 * 64
    s3 = 32 * 64 * 9 + 5 * 64 * 64 * 9 + 32 * 64 + 7 * 128
    assert count_parameters(build_model("resnet20")) == stem + s1 + s2 + s3 + 650
    # VGG16 classifier on 64px inputs: the first linear sees 512 * 2 * 2 features.
    vgg = build_model("vgg16", num_classes=200, image_size=64)
    assert dict(vgg.named_modules())["classifier.fc1"].in_features == 2048


def test_initialisation_follows_the_global_seed():
    torch.manual_seed(1)
    a = build_model("resnet8").state_dict()
    torch.manual_seed(1)
    b = build_model("resnet8").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_registry_errors():
    with pytest.raises(UserInputError, match="unknown model 'resnet18'"):
        build_model("resnet18")
    with pytest.raises(UserInputError, match="needs images of at least 32px"):
        build_model("vgg16", image_size=16)


def test_registering_a_model_with_a_broken_stage_map_fails():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)
            self.stages = {"all": ["a"]}

        def forward(self, x):
            return self.b(self.a(x))

    register_model("test-broken", description="", classifier=("b",))(lambda **kw: Tiny())
    with pytest.raises(AssertionError, match=r"missing \['b'\]"):
        build_model("test-broken")


def test_the_original_codes_regnetx_has_no_groups_and_a_stride_2_stem():
    model = build_model("regnetx_200mf_nogroups")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.groups == 1 for c in convs)
    assert model.stem.stride == (2, 2)
    grouped = dict(build_model("regnetx_200mf").named_modules())["stage4.0.conv2"]
    plain = dict(model.named_modules())["stage4.0.conv2"]
    # the second convolution: 368/8 = 46 times the weights without groups
    assert plain.weight.numel() == 46 * grouped.weight.numel()
    assert [len(v) for v in model.stages.values()] == [1, 4, 4, 13, 22, 1]


def test_initialisation_schemes():
    """He-normal std is sqrt(2 / fan): fan-out (the default) and fan-in differ by the ratio of
    output to input channels; PyTorch's default is uniform with bound 1/sqrt(fan_in)."""
    torch.manual_seed(0)
    out = dict(build_model("resnet20").named_modules())["layer2.0.conv1"]  # 16 -> 32, 3x3
    torch.manual_seed(0)
    fan_in = dict(build_model("resnet20", init="fan_in").named_modules())["layer2.0.conv1"]
    torch.manual_seed(0)
    torch_default = dict(build_model("resnet20", init="torch_default").named_modules())[
        "layer2.0.conv1"
    ]
    assert float(out.weight.detach().std()) == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.05)
    assert float(fan_in.weight.detach().std()) == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.05)
    bound = 1 / (16 * 9) ** 0.5
    assert float(torch_default.weight.detach().abs().max()) <= bound + 1e-6
    assert float(torch_default.weight.detach().abs().max()) > 0.9 * bound
