"""scikit-learn's bundled 8×8 handwritten digits: no download, the offline quickstart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunescope.data.registry import ArrayDataset, DatasetSpec, register_dataset
from prunescope.data.subset import stratified_subset

# The dataset has no official split; a fixed stratified quarter is the test set,
# independent of the run's seed, so runs with different seeds share a test set.
TEST_SIZE = 450
SPLIT_SEED = 0


def load_digits_arrays(root: Path, download: bool) -> ArrayDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    test = stratified_subset(labels, TEST_SIZE, SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return ArrayDataset(
        images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)]
    )


DIGITS = register_dataset(
    DatasetSpec(
        name="digits",
        description="scikit-learn 8x8 digits (1,347 train / 450 test, 1 channel), bundled",
        num_classes=10,
        channels=1,
        image_size=16,
        mean=(0.3053,),
        std=(0.3759,),
        crop_padding=2,
        flip=False,
        load=load_digits_arrays,
        default_root="",
    )
)
