"""Node classification on one graph: the Planetoid file layout (Cora, Citeseer, PubMed)
that users bring, and a seeded synthetic planted-partition graph for offline runs.

A graph is features ``[nodes, features]``, labels, an edge list and the train/test node
sets; the model sees the normalised adjacency D^-1/2 (A + I) D^-1/2 (Kipf & Welling 2017).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunescope.data.cifar10 import ArrayUnpickler
from prunescope.data.registry import DatasetSpec, register_dataset
from prunescope.data.subset import stratified_subset
from prunescope.errors import DataError

PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")


@dataclass
class GraphArrays:
    features: np.ndarray  # float32 [nodes, features]
    labels: np.ndarray  # int64 [nodes]
    edges: np.ndarray  # int64 [2, edges], both directions
    train_nodes: np.ndarray
    test_nodes: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.features.shape[0] != n:
            raise DataError(f"{self.features.shape[0]} feature rows but {n} labels")
        if np.intersect1d(self.train_nodes, self.test_nodes).size:
            raise DataError("a node is both a training and a test node")
        if self.edges.size and (self.edges.min() < 0 or self.edges.max() >= n):
            raise DataError(f"an edge names a node outside 0..{n - 1}")


def normalised_adjacency(edges: np.ndarray, nodes: int) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 as a coalesced sparse COO tensor (float32); duplicate edges
    count once."""
    loops = np.arange(nodes)
    rows = np.concatenate([edges[0], loops])
    cols = np.concatenate([edges[1], loops])
    pairs = np.unique(np.stack([rows, cols]), axis=1)
    degree = np.bincount(pairs[0], minlength=nodes).astype(np.float64)
    values = 1.0 / np.sqrt(degree[pairs[0]] * degree[pairs[1]])
    return torch.sparse_coo_tensor(
        torch.from_numpy(pairs),
        torch.from_numpy(values).float(),
        (nodes, nodes),
        check_invariants=True,
    ).coalesce()


# -- Planetoid ----------------------------------------------------------------------------


class _PlanetoidUnpickler(ArrayUnpickler):
    """Planetoid files are Python 2 pickles of scipy sparse matrices, numpy arrays and a
    dict of adjacency lists; nothing else may load (a tampered file cannot run code)."""

    ALLOWED = ArrayUnpickler.ALLOWED | frozenset(
        {
            ("collections", "defaultdict"),
            ("__builtin__", "list"),
            ("builtins", "list"),
            ("scipy.sparse.csr", "csr_matrix"),
            ("scipy.sparse._csr", "csr_matrix"),
            ("scipy.sparse.lil", "lil_matrix"),
            ("scipy.sparse._lil", "lil_matrix"),
            ("scipy.sparse.csc", "csc_matrix"),
            ("scipy.sparse._csc", "csc_matrix"),
        }
    )


def planetoid_folder(root: Path) -> tuple[Path, str]:
    """The folder with ``ind.<name>.*`` files under ``root`` (or ``root/raw``), and name."""
    for folder in (root, root / "raw"):
        found = sorted(folder.glob("ind.*.graph")) if folder.is_dir() else []
        names = [p.name[len("ind.") : -len(".graph")] for p in found]
        if len(names) > 1:
            raise DataError(
                f"{folder} holds several Planetoid graphs ({', '.join(names)}): point "
                f"data.root at a folder with one"
            )
        if names:
            return folder, names[0]
    raise DataError(
        f"no Planetoid graph under {root}: planetoid reads ind.<name>.{{x,y,tx,ty,allx,ally,"
        f"graph,test.index}} (the layout of github.com/kimiyoung/planetoid) from data.root or "
        f"data.root/raw"
    )


def _read_part(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _PlanetoidUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read {path} ({exc})") from None


def _dense(matrix: object) -> np.ndarray:
    return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix)


def load_planetoid(root: Path, download: bool) -> GraphArrays:
    """The standard processing (Kipf's ``load_data``): features are allx then tx in the
    order of ``test.index``; the train nodes are the first ``len(y)`` (20 per class), the
    test nodes those of ``test.index``. Citeseer's isolated test nodes get zero rows."""
    if download:
        raise DataError("planetoid is user-provided: set data.root to its files")
    folder, name = planetoid_folder(root)
    parts = {p: _read_part(folder / f"ind.{name}.{p}") for p in PLANETOID_PARTS}
    try:
        test_index = np.loadtxt(folder / f"ind.{name}.test.index", dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {folder}/ind.{name}.test.index ({exc})") from None
    allx, tx = _dense(parts["allx"]), _dense(parts["tx"])
    ally, ty = _dense(parts["ally"]), _dense(parts["ty"])
    if len(tx) != len(test_index) or len(ty) != len(test_index):
        raise DataError(f"ind.{name}.tx/ty and test.index disagree on the number of test nodes")
    # Kipf stacks allx with the test rows spread over min..max of test.index; row j of
    # tx belongs to node test_index[j] (file order). Nodes in that span without a row
    # (Citeseer's isolated nodes) keep zero features and are in neither set.
    nodes = len(allx) + int(test_index.max() - test_index.min() + 1)
    features = np.zeros((nodes, allx.shape[1]), dtype=np.float32)
    onehot = np.zeros((nodes, ally.shape[1]), dtype=np.float32)
    features[: len(allx)], onehot[: len(ally)] = allx, ally
    features[test_index], onehot[test_index] = tx, ty
    row_sums = features.sum(1, keepdims=True)
    features = features / np.where(row_sums > 0, row_sums, 1)  # row-normalised, as Kipf
    edges = [(u, v) for u, vs in parts["graph"].items() for v in vs]
    edge_arr = np.array(edges, dtype=np.int64).T.reshape(2, -1)
    edge_arr = np.concatenate([edge_arr, edge_arr[::-1]], axis=1)  # undirected
    edge_arr = edge_arr[:, (edge_arr < nodes).all(0)]
    return GraphArrays(
        features=features.astype(np.float32),
        labels=onehot.argmax(1).astype(np.int64),
        edges=edge_arr,
        train_nodes=np.arange(len(_dense(parts["y"]))),
        test_nodes=np.sort(test_index),
        classes=[str(i) for i in range(onehot.shape[1])],
    )


# -- a synthetic planted partition ---------------------------------------------------------

SBM_NODES = 1200
SBM_CLASSES = 4
SBM_FEATURES = 32
SBM_DEGREE_IN = 5.0  # expected neighbours in the node's own block
SBM_DEGREE_OUT = 3.0  # expected neighbours in the other blocks, in all
SBM_SIGNAL = 0.15  # class-mean separation of the features relative to their noise
SBM_TRAIN_PER_CLASS = 30
SBM_TEST = 600
SBM_SEED = 0


def planted_partition(
    *,
    nodes: int = SBM_NODES,
    classes: int = SBM_CLASSES,
    features: int = SBM_FEATURES,
    seed: int = SBM_SEED,
) -> GraphArrays:
    """A stochastic block model: nodes in ``classes`` equal blocks, edges more likely
    within a block, Gaussian features whose class means are weakly apart, so that the
    graph carries much of the label. Train: SBM_TRAIN_PER_CLASS per class; test: a
    stratified SBM_TEST of the rest."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B3]))
    labels = np.arange(nodes) % classes
    rng.shuffle(labels)
    p_in = SBM_DEGREE_IN / (nodes / classes)
    p_out = SBM_DEGREE_OUT / (nodes - nodes / classes)
    upper = np.triu(rng.random((nodes, nodes)), 1)
    same = labels[:, None] == labels[None, :]
    pairs = np.argwhere((upper > 0) & (upper < np.where(same, p_in, p_out)))
    edges = np.concatenate([pairs.T, pairs.T[::-1]], axis=1).astype(np.int64)
    means = rng.normal(0.0, SBM_SIGNAL, size=(classes, features))
    x = (means[labels] + rng.normal(0.0, 1.0, size=(nodes, features))).astype(np.float32)
    train = np.concatenate(
        [np.flatnonzero(labels == c)[:SBM_TRAIN_PER_CLASS] for c in range(classes)]
    )
    rest = np.setdiff1d(np.arange(nodes), train)
    test = rest[stratified_subset(labels[rest], SBM_TEST, seed)]
    return GraphArrays(
        x,
        labels.astype(np.int64),
        edges,
        np.sort(train),
        np.sort(test),
        [f"block {c}" for c in range(classes)],
    )


def load_sbm(root: Path, download: bool) -> GraphArrays:
    return planted_partition()


_GRAPH = dict(channels=1, image_size=0, mean=(), std=(), crop_padding=0, flip=False, kind="graph")

PLANETOID = register_dataset(
    DatasetSpec(
        name="planetoid",
        description="a Planetoid graph you bring (Cora, Citeseer, PubMed: ind.<name>.* files)",
        num_classes=0,
        load=load_planetoid,
        default_root="data/planetoid",
        **_GRAPH,
    )
)

SBM = register_dataset(
    DatasetSpec(
        name="sbm",
        description=f"SYNTHETIC planted-partition graph ({SBM_NODES} nodes, {SBM_CLASSES} "
        f"blocks, seeded), offline",
        num_classes=SBM_CLASSES,
        load=load_sbm,
        default_root="",
        synthetic=True,
        **_GRAPH,
    )
)
