"""Building hostile and mistaken input for the tests: re-signed files, fake datasets."""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np

from prunescope.data import cifar10 as cifar_mod
from prunescope.rundir.atomic import sha256_bytes


def one_error_line(capsys) -> str:
    """The one ``prunescope:`` line a failed command printed (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("prunescope:")]
    assert len(lines) == 1, err
    return lines[0]


def resign(root: Path, rel: str, data: bytes) -> None:
    """Replace a file *and* its manifest record, as anyone handing over a run directory can."""
    (root / rel).write_bytes(data)
    edit_manifest(root, lambda m: m["files"].__setitem__(rel, record_of(data)))


def record_of(data: bytes) -> dict:
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def write_batch(path: Path, images: np.ndarray, labels) -> None:
    with open(path, "wb") as f:
        pickle.dump(
            {b"data": images.reshape(len(images), -1), b"labels": list(labels)}, f, protocol=2
        )


def fake_cifar(folder: Path, n: int = 20, label_shift: int = 0) -> None:
    """A CIFAR-10 folder in the official layout with ``n`` random images per batch file."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*cifar_mod.TRAIN_FILES, cifar_mod.TEST_FILE]:
        labels = (np.arange(n) + label_shift) % 10
        write_batch(folder / name, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels)


def write_planetoid(folder: Path, name: str = "toy") -> tuple[np.ndarray, np.ndarray]:
    """A Planetoid layout (Kipf's ind.<name>.* pickles and test.index), 12 nodes, 3 classes:
    train nodes 0..2 (x, y), allx nodes 0..5, test nodes 9, 7, 11, 8, 6 in file order; node 10
    has no row (as Citeseer's isolated nodes)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    onehot = np.eye(3)[labels]
    feats = rng.random((12, 4)) + np.eye(3, 4)[labels]
    test_index = [9, 7, 11, 8, 6]
    parts = {
        "x": sp.csr_matrix(feats[:3]),
        "y": onehot[:3],
        "allx": sp.csr_matrix(feats[:6]),
        "ally": onehot[:6],
        "tx": sp.csr_matrix(feats[test_index]),
        "ty": onehot[test_index],
        "graph": defaultdict(list, {i: [(i + 1) % 12] for i in range(12)}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for part, obj in parts.items():
        with open(folder / f"ind.{name}.{part}", "wb") as f:
            pickle.dump(obj, f, protocol=2)
    (folder / f"ind.{name}.test.index").write_text("\n".join(map(str, test_index)) + "\n")
    return labels, feats
