"""Datasets, stratified subsets and the on-device loader."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from hostile_helpers import fake_cifar, write_batch
from prunescope.data import DeviceLoader, dataset_names, prepare_data, stratified_subset
from prunescope.data import cifar10 as cifar_mod
from prunescope.data.loader import random_crop_flip
from prunescope.data.tinyimagenet import CACHE_NAME, load_tinyimagenet_arrays
from prunescope.errors import DataError

# --- stratified subsets ----------------------------------------------------------------


def test_subset_is_stratified_and_exact_size():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    idx = stratified_subset(labels, 100, seed=0)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.bincount(labels[idx]).tolist() == [10, 20, 30, 40]
    assert (np.diff(idx) > 0).all()


def test_subset_remainder_goes_to_largest_fractions():
    labels = np.repeat(np.arange(3), [10, 10, 10])
    # 7 of 30: each class deserves 2.33; the one extra goes to class 0 (ties: lowest).
    assert np.bincount(labels[stratified_subset(labels, 7, 0)]).tolist() == [3, 2, 2]


def test_subset_is_seeded():
    labels = np.repeat(np.arange(10), 50)
    a, b = stratified_subset(labels, 60, 1), stratified_subset(labels, 60, 1)
    c = stratified_subset(labels, 60, 2)
    assert (a == b).all() and not (a == c).all()
    assert (stratified_subset(labels, 10_000, 1) == np.arange(500)).all()


# --- CIFAR-10 --------------------------------------------------------------------------


def test_cifar10_reads_the_shared_copy(cifar10_root):
    d = prepare_data("cifar10", str(cifar10_root))
    assert tuple(d.train_x.shape) == (50_000, 3, 32, 32) and tuple(d.test_x.shape) == (
        10_000,
        3,
        32,
        32,
    )
    assert d.train_x.dtype == torch.uint8
    assert torch.bincount(d.train_y).tolist() == [5000] * 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    mean = (d.train_x.double() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(
        mean, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64), atol=1e-3
    )
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"


def test_cifar10_subsets(cifar10_root):
    d = prepare_data("cifar10", str(cifar10_root), train_subset=1000, test_subset=200, seed=5)
    assert torch.bincount(d.train_y).tolist() == [100] * 10
    assert torch.bincount(d.test_y).tolist() == [20] * 10


def test_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found under"):
        cifar_mod.load_cifar10_arrays(tmp_path, download=False)
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar(folder)
    ds = cifar_mod.load_cifar10_arrays(tmp_path, download=False)
    assert ds.train_x.shape == (100, 3, 32, 32)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        cifar_mod.load_cifar10_arrays(tmp_path, download=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        cifar_mod.load_cifar10_arrays(tmp_path, download=False)


def test_cifar10_batches_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        cifar_mod.load_cifar10_arrays(tmp_path, download=False)


def test_cifar10_download_is_verified(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fake_cifar(src / "cifar-10-batches-py")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = tmp_path / "official.tar.gz"
    archive.write_bytes(buf.getvalue())
    monkeypatch.setattr(cifar_mod, "URL", archive.as_uri())
    monkeypatch.setattr(cifar_mod, "ARCHIVE_MD5", "0" * 32)
    with pytest.raises(DataError, match="is corrupt: md5"):
        cifar_mod.load_cifar10_arrays(tmp_path / "root", download=True)
    assert not list((tmp_path / "root").glob("*.partial"))
    monkeypatch.setattr(cifar_mod, "ARCHIVE_MD5", hashlib.md5(buf.getvalue()).hexdigest())
    ds = cifar_mod.load_cifar10_arrays(tmp_path / "root", download=True)
    assert ds.test_x.shape == (20, 3, 32, 32)


# --- Tiny ImageNet ---------------------------------------------------------------------


def make_tiny_imagenet(
    root, wnids=("n01443537", "n01629819", "n01641577"), per_class=4, val_per_class=2
):
    """A miniature copy of the official tiny-imagenet-200 layout, with real JPEGs."""
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text(
        "\n".join(reversed(wnids)) + "\n"
    )  # order on disk is not label order
    colours = {}
    for c, wnid in enumerate(wnids):
        img_dir = folder / "train" / wnid / "images"
        img_dir.mkdir(parents=True)
        colours[wnid] = (40 + 80 * c, 200 - 60 * c, 30 * c)
        for i in range(per_class):
            Image.new("RGB", (64, 64), colours[wnid]).save(img_dir / f"{wnid}_{i}.JPEG", quality=95)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    k = 0
    for wnid in wnids:
        for _ in range(val_per_class):
            name = f"val_{k}.JPEG"
            Image.new("L", (64, 64), 128).convert("RGB").save(folder / "val" / "images" / name)
            Image.new("RGB", (64, 64), colours[wnid]).save(
                folder / "val" / "images" / name, quality=95
            )
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
            k += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder, colours


def test_tinyimagenet_official_layout(tmp_path):
    folder, colours = make_tiny_imagenet(tmp_path)
    ds = load_tinyimagenet_arrays(tmp_path, download=False)
    assert ds.classes == sorted(colours)
    assert ds.train_x.shape == (12, 3, 64, 64) and ds.test_x.shape == (6, 3, 64, 64)
    assert ds.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    # Every image decodes to its class colour (JPEG is lossy: within a few levels).
    for x, y in zip(ds.test_x, ds.test_y, strict=True):
        want = np.array(colours[ds.classes[y]], dtype=np.float64)
        assert np.abs(x.reshape(3, -1).mean(1) - want).max() < 4
    cache = folder / CACHE_NAME
    assert cache.exists()
    # The cache is used from then on: removing the JPEGs does not matter.
    for p in folder.rglob("*.JPEG"):
        p.unlink()
    again = load_tinyimagenet_arrays(tmp_path, download=False)
    assert (again.train_x == ds.train_x).all() and again.classes == ds.classes


def test_tinyimagenet_errors(tmp_path):
    with pytest.raises(DataError, match="Tiny ImageNet not found"):
        load_tinyimagenet_arrays(tmp_path, download=False)
    folder, _ = make_tiny_imagenet(tmp_path)
    with open(folder / "val" / "val_annotations.txt", "a") as f:
        f.write("val_99.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="unknown class"):
        load_tinyimagenet_arrays(tmp_path, download=False)


def test_tinyimagenet_through_prepare_data(tmp_path):
    make_tiny_imagenet(tmp_path)
    d = prepare_data("tinyimagenet", str(tmp_path))
    assert d.image_size == 64 and d.spec.num_classes == 200


# --- digits ----------------------------------------------------------------------------


def test_digits_split_and_upsampling():
    d = prepare_data("digits", "", image_size=16)
    assert tuple(d.train_x.shape) == (1347, 1, 16, 16) and tuple(d.test_x.shape) == (450, 1, 16, 16)
    counts = torch.bincount(d.test_y).double()
    totals = counts + torch.bincount(d.train_y).double()
    share = 450 * totals / totals.sum()  # stratified: each class within one of its share
    assert counts.sum() == 450 and ((counts - share).abs() < 1).all()
    assert d.train_x.max() == 255


# --- the device loader -----------------------------------------------------------------


def _loader(x, y, **kw):
    kw.setdefault("train", True)
    return DeviceLoader(x, y, 8, (0.5,), (0.25,), torch.device("cpu"), **kw)


def test_crop_and_flip_by_hand():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    pad = 2
    same = random_crop_flip(x, torch.tensor([pad, pad]), torch.tensor([pad, pad]), None, pad)
    assert torch.equal(same, x)
    shifted = random_crop_flip(x, torch.tensor([0, 4]), torch.tensor([4, 2]), None, pad)
    # image 0: offset (0, 4) of the padded image = rows -2..1, cols 2..5
    want0 = torch.zeros(4, 4, dtype=torch.uint8)
    want0[2:, :2] = x[0, 0, :2, 2:]
    assert torch.equal(shifted[0, 0], want0)
    want1 = torch.zeros(4, 4, dtype=torch.uint8)
    want1[:2, :] = x[1, 0, 2:, :]
    assert torch.equal(shifted[1, 0], want1)
    flipped = random_crop_flip(
        x, torch.tensor([pad, pad]), torch.tensor([pad, pad]), torch.tensor([True, False]), pad
    )
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])


def test_augmentation_is_reproducible_from_the_seed():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(40) % 10
    a = list(_loader(x, y, crop_padding=2, flip=True, seed=3).epoch(7))
    b = list(_loader(x, y, crop_padding=2, flip=True, seed=3).epoch(7))
    c = list(_loader(x, y, crop_padding=2, flip=True, seed=3).epoch(8))
    d = list(_loader(x, y, crop_padding=2, flip=True, seed=4).epoch(7))
    assert all(
        torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
    )
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], d[0][0])
    # every image appears exactly once per epoch (40 = 5 full batches of 8)
    assert sorted(torch.cat([yb for _, yb in a]).tolist()) == sorted(y.tolist())


def test_training_batches_are_normalised_and_cover_the_epoch():
    x = torch.full((20, 1, 4, 4), 128, dtype=torch.uint8)
    y = torch.arange(20)
    loader = _loader(x, y, crop_padding=0)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 2  # the ragged tail (4 images) is dropped in training
    assert torch.allclose(
        batches[0][0], torch.full((8, 1, 4, 4), (128 / 255 - 0.5) / 0.25), atol=1e-6
    )


def test_evaluation_keeps_order_and_every_image():
    x = torch.randint(0, 256, (21, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(21)
    loader = _loader(x, y, train=False, crop_padding=2, flip=True)
    batches = list(loader)
    assert len(batches) == 3
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert torch.allclose(
        torch.cat([b[0] for b in batches]), (x.float() / 255 - 0.5) / 0.25, atol=1e-6
    )


# --- hostile or mistaken data (issue #10) -------------------------------------------------


def test_float_pixels_in_a_cifar10_batch_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar(folder)
    floats = np.linspace(-100, 843, 20 * 3 * 32 * 32).reshape(20, 3, 32, 32)
    write_batch(folder / "data_batch_2", floats, [0] * 20)
    with pytest.raises(DataError, match=r"data_batch_2 holds float64 pixels \(-100.0 to 843.0\)"):
        cifar_mod.load_cifar10_arrays(tmp_path, download=False)


def test_subsets_too_small_or_too_large_are_refused(tmp_path):
    fake_cifar(tmp_path / "cifar-10-batches-py")  # 100 train / 20 test images
    with pytest.raises(
        DataError, match=r"data.train_subset = 101 is larger than .* \(100 images\)"
    ):
        prepare_data("cifar10", str(tmp_path), train_subset=101)
    with pytest.raises(
        DataError, match=r"data.test_subset = 9 is smaller than the number of classes \(10\)"
    ):
        prepare_data("cifar10", str(tmp_path), test_subset=9)
    assert len(prepare_data("cifar10", str(tmp_path), train_subset=100).train_y) == 100


def test_an_absurdly_long_data_root_is_one_short_line(capsys):
    from prunescope.cli import main

    root = "x" * 10_000_000
    assert main(["train", "--out", "/nonexistent/out", "--set", f"data.root={root}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunescope: error: cifar10: cannot read data.root") and len(err) < 600


def test_a_read_only_tinyimagenet_folder_is_decoded_without_a_cache(tmp_path, monkeypatch):
    import errno as errno_mod

    import prunescope.data.tinyimagenet as tin

    folder, _ = make_tiny_imagenet(tmp_path)
    real_open = open

    def read_only(path, mode="r", *a, **kw):
        if "w" in mode and str(path).startswith(str(folder)):
            raise OSError(errno_mod.EROFS, "Read-only file system")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", read_only)
    monkeypatch.setattr(
        tin.Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(OSError(30, "ro"))
    )
    ds = load_tinyimagenet_arrays(tmp_path, download=False)
    assert ds.train_x.shape == (12, 3, 64, 64) and not (folder / CACHE_NAME).exists()


@pytest.mark.parametrize("damage", ["labels", "shape", "classes"])
def test_a_tinyimagenet_cache_that_does_not_fit_is_rebuilt(tmp_path, damage):
    folder, _ = make_tiny_imagenet(tmp_path)
    good = load_tinyimagenet_arrays(tmp_path, download=False)
    with np.load(folder / CACHE_NAME) as z:
        arrays = dict(z)
    if damage == "labels":
        arrays["train_y"] = arrays["train_y"] + 7  # out of range for 3 classes
    elif damage == "shape":
        arrays["train_x"] = arrays["train_x"][:, :, :32, :32].copy()
    else:
        arrays["classes"] = np.asarray(["a", "b", "c"])
    np.savez(folder / CACHE_NAME, **arrays)
    again = load_tinyimagenet_arrays(tmp_path, download=False)
    assert (again.train_x == good.train_x).all() and (again.train_y == good.train_y).all()
    assert again.classes == good.classes


def test_a_dataset_of_an_unknown_kind_is_refused_when_registered():
    from prunescope.data.registry import DatasetSpec, register_dataset
    from prunescope.errors import UserInputError

    spec = DatasetSpec(
        name="audio_clips",
        description="",
        num_classes=2,
        channels=1,
        image_size=0,
        mean=(),
        std=(),
        crop_padding=0,
        flip=False,
        load=lambda root, download: None,
        default_root="",
        kind="audio",
    )
    with pytest.raises(UserInputError, match="unknown data kind 'audio'; choose one of images"):
        register_dataset(spec)
    assert "audio_clips" not in dataset_names()
