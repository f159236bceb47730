"""Tiny ImageNet (200 classes, 64×64) from the official ``tiny-imagenet-200`` layout.

JPEG decoding of 110,000 files takes minutes, so the decoded arrays are cached
once as an uncompressed ``.npz`` (no pickles) beside the data.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prunescope.data.download import download_archive, extract_archive
from prunescope.data.registry import ArrayDataset, DatasetSpec, nested_hint, register_dataset
from prunescope.errors import DataError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"
CACHE_NAME = "prunescope-uint8-v1.npz"
SIDE = 64

log = logging.getLogger("prunescope")


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Tiny ImageNet image {path} cannot be decoded: {exc}") from None
    if arr.shape != (SIDE, SIDE, 3):
        raise DataError(f"Tiny ImageNet image {path} is {arr.shape[:2]}, expected {SIDE}x{SIDE}")
    return arr.transpose(2, 0, 1)


def _decode_all(paths: list[Path], desc: str) -> np.ndarray:
    out = np.empty((len(paths), 3, SIDE, SIDE), dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=1.0)):
        out[i] = _decode(p)
    return out


def decode_folder(folder: Path) -> ArrayDataset:
    wnids_file = folder / "wnids.txt"
    if not wnids_file.exists():
        raise DataError(f"Tiny ImageNet folder {folder} has no wnids.txt")
    wnids = _wnids(folder)
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise DataError(
                f"Tiny ImageNet class {wnid} has no images in {folder / 'train' / wnid / 'images'}"
            )
        train_paths += images
        train_labels += [index[wnid]] * len(images)
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.exists():
        raise DataError(f"Tiny ImageNet folder {folder} has no val/val_annotations.txt")
    val_paths, val_labels = [], []
    for line_no, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{annotations}:{line_no}: unknown class or malformed line {line!r}")
        val_paths.append(folder / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    return ArrayDataset(
        _decode_all(train_paths, "decode train"),
        np.asarray(train_labels, dtype=np.int64),
        _decode_all(val_paths, "decode val"),
        np.asarray(val_labels, dtype=np.int64),
        wnids,
    )


def _read_cache(path: Path, wnids: list[str]) -> ArrayDataset | None:
    """The cached arrays, or None when the cache is damaged or does not fit the folder."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ds = ArrayDataset(
                z["train_x"], z["train_y"], z["test_x"], z["test_y"], [str(w) for w in z["classes"]]
            )
    except Exception:
        return None  # a damaged cache is rebuilt from the JPEGs
    shapes_ok = all(x.shape[1:] == (3, SIDE, SIDE) for x in (ds.train_x, ds.test_x))
    labels_ok = all(
        y.dtype.kind == "i" and (y.size == 0 or (y.min() >= 0 and y.max() < len(wnids)))
        for y in (ds.train_y, ds.test_y)
    )
    if ds.classes != wnids or not shapes_ok or not labels_ok:
        log.warning("Tiny ImageNet cache %s does not fit its folder: decoding again", path)
        return None
    return ds


def _write_cache(path: Path, ds: ArrayDataset) -> None:
    """Cache the decoded arrays; a folder that cannot be written only costs the decode next time."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                train_x=ds.train_x,
                train_y=ds.train_y,
                test_x=ds.test_x,
                test_y=ds.test_y,
                classes=np.asarray(ds.classes),
            )
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.info(
            "cannot cache decoded Tiny ImageNet in %s (%s); not cached", path.parent, exc.strerror
        )


def _wnids(folder: Path) -> list[str]:
    text = (folder / "wnids.txt").read_text()
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def load_tinyimagenet_arrays(root: Path, download: bool) -> ArrayDataset:
    folder = root / FOLDER if (root / FOLDER).exists() else root
    if not (folder / "wnids.txt").exists():
        if not download:
            raise DataError(
                f"Tiny ImageNet not found under {root} (expected {root / FOLDER}/wnids.txt, train/, val/); "
                f"set data.root to its folder or data.download = true{nested_hint(root, FOLDER)}"
            )
        archive = download_archive(URL, root / "tiny-imagenet-200.zip", ARCHIVE_MD5)
        extract_archive(archive, root)
        folder = root / FOLDER
    cache = folder / CACHE_NAME
    if cache.exists() and (ds := _read_cache(cache, _wnids(folder))) is not None:
        return ds
    ds = decode_folder(folder)
    _write_cache(cache, ds)
    return ds


TINYIMAGENET = register_dataset(
    DatasetSpec(
        name="tinyimagenet",
        description="Tiny ImageNet (100,000 train / 10,000 val as test, 64x64 RGB, 200 classes)",
        num_classes=200,
        channels=3,
        image_size=64,
        mean=(0.4802, 0.4481, 0.3975),
        std=(0.2302, 0.2265, 0.2262),
        crop_padding=8,
        flip=True,
        load=load_tinyimagenet_arrays,
        default_root="data",
    )
)
