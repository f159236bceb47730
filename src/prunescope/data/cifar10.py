"""CIFAR-10 in the official "python version" layout, with an opt-in verified download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunescope.data.download import download_archive, extract_archive
from prunescope.data.registry import ArrayDataset, DatasetSpec, nested_hint, register_dataset
from prunescope.data.safe_pickle import ArrayUnpickler, CorruptPickle, load_pickle
from prunescope.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
# A batch of 10,000 images pickles to 31 MB (3,072 bytes an image and its label).
BATCH_BYTES = 64 << 20


def _key(d: dict, name: str):
    if name in d:
        return d[name]
    if name.encode() in d:
        return d[name.encode()]
    raise KeyError(name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = load_pickle(
            path, limit=BATCH_BYTES, what="CIFAR-10", unpickler=ArrayUnpickler, encoding="bytes"
        )
        raw = np.asarray(_key(d, "data"))
        labels = np.asarray(_key(d, "labels"), dtype=np.int64)
        images = raw.reshape(-1, 3, 32, 32)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch {path} is missing") from None
    except CorruptPickle as exc:
        raise DataError(
            f"CIFAR-10 batch {path} is corrupt or not a CIFAR-10 batch: {exc.detail}"
        ) from None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"CIFAR-10 batch {path} is corrupt or not a CIFAR-10 batch: {exc}"
        ) from None
    if images.dtype != np.uint8:
        # the official batches hold uint8 pixels; anything else would be wrapped into 0..255
        lo, hi = (images.min(), images.max()) if images.size else (0, 0)
        raise DataError(
            f"CIFAR-10 batch {path} holds {images.dtype} pixels ({lo} to {hi}), not uint8 0-255"
        )
    if len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"CIFAR-10 batch {path} has inconsistent labels")
    return images, labels


def find_folder(root: Path) -> Path | None:
    for candidate in (root / FOLDER, root):
        if (candidate / TEST_FILE).exists() or (candidate / TRAIN_FILES[0]).exists():
            return candidate
    return None


def load_cifar10_arrays(root: Path, download: bool) -> ArrayDataset:
    folder = find_folder(root)
    if folder is None:
        if not download:
            raise DataError(
                f"CIFAR-10 not found under {root} (expected {root / FOLDER}/data_batch_1..5 and "
                f"test_batch); set data.root to its folder or data.download = true"
                f"{nested_hint(root, FOLDER)}"
            )
        archive = download_archive(URL, root / "cifar-10-python.tar.gz", ARCHIVE_MD5)
        extract_archive(archive, root)
        folder = root / FOLDER
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch(folder / TEST_FILE)
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    return ArrayDataset(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        test_x,
        test_y,
        classes,
    )


CIFAR10 = register_dataset(
    DatasetSpec(
        name="cifar10",
        description="CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB), python-batch layout",
        num_classes=10,
        channels=3,
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        crop_padding=4,
        flip=True,
        load=load_cifar10_arrays,
        default_root="data",
    )
)
