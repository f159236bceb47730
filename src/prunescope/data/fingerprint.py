"""A fingerprint of the data a run actually trained on.

``data.root`` may change when a run is resumed (the data moved, a cluster mounts
it elsewhere), but the images and labels behind it must not: the fingerprint
is a sha256 of the prepared arrays (after subsets and resizing), so a resume or
an analysis on other data is caught, whatever the files are called.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from prunescope.data import PreparedData


def data_fingerprint(data: PreparedData) -> dict[str, Any]:
    h = hashlib.sha256()
    for name in ("train_x", "train_y", "test_x", "test_y"):
        arr = np.ascontiguousarray(getattr(data, name).numpy())
        h.update(f"{name}:{arr.dtype}:{arr.shape};".encode())
        h.update(memoryview(arr).cast("B"))
    return {
        "sha256": h.hexdigest(),
        "train_images": len(data.train_y),
        "test_images": len(data.test_y),
    }
