"""Node classification on one graph: the Planetoid file layout (Cora, Citeseer, PubMed)
that users bring, and a seeded synthetic planted-partition graph for offline runs.

A graph is features ``[nodes, features]``, labels, an edge list and the train/test node
sets; the model sees the normalised adjacency D^-1/2 (A + I) D^-1/2 (Kipf & Welling 2017).
"""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunescope.data.registry import DatasetSpec, register_dataset
from prunescope.data.safe_pickle import ArrayUnpickler, file_bytes, load_pickle, one_line
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
#
# The files may come from anyone. Reading them runs no code and writes nowhere, and every
# fault ends in one DataError line: each part is read as bytes (a regular file, at most a
# cap), its pickle is scanned before it loads, scipy's sparse classes load as inert records,
# and every array is checked with numpy before numpy or scipy indexes with it.

# The most bytes read from one pickled part. A PubMed-sized allx (18,717 x 500, about 50
# non-zeros a row, as PubMed) pickles to 15.5 MB here at protocol 2; its graph (19,717 nodes)
# to 0.45 MB. The opcode scan of a file this large made of 1-byte opcodes takes about 12 s
# (measured 1.5 s for 8 million), so a hostile file costs seconds, not a hang.
PART_BYTES = 64 << 20
# test.index holds one node a line: PubMed's 1,000 lines are about 6 kB.
TEST_INDEX_BYTES = 1 << 20
# nodes x max(features, classes) of the dense arrays built (float32: 200 MB at the cap).
# Citeseer is the largest of the three: 3,327 x 3,703 = 12.3 million (Cora 3.9, PubMed 9.9).
DENSE_ELEMENTS = 50_000_000
# Neighbour entries of the graph dict (PubMed has 88,648 directed edges, as PyG counts them).
# Through its memo a pickle can give one long list to many nodes, so the file size does not
# bound them.
GRAPH_ENTRIES = 5_000_000


class _SparseRecord:
    """What a pickled scipy sparse matrix loads as: the state pickle hands over, and nothing
    else. Unpickling a real csr_matrix skips its constructor and its checks, so a forged
    ``indptr`` reached ``todense()``, which wrote out of bounds (``free(): invalid size``,
    SIGSEGV); no scipy code sees a record, and :func:`_sparse` builds the matrix only from
    arrays it has checked."""

    __slots__ = ("state",)
    FORMAT = ""

    def __new__(cls, *args: object) -> _SparseRecord:
        if args:  # scipy pickles its matrices with no arguments (NEWOBJ on an empty tuple)
            raise pickle.UnpicklingError(f"a {cls.FORMAT} matrix pickled with arguments")
        record = super().__new__(cls)
        record.state = None
        return record

    def __setstate__(self, state: object) -> None:
        self.state = state


class _CsrRecord(_SparseRecord):
    __slots__ = ()
    FORMAT = "csr"


class _CscRecord(_SparseRecord):
    __slots__ = ()
    FORMAT = "csc"


# lil_matrix is not admitted: no Planetoid file holds one (x, tx and allx are csr, y, ty and
# ally numpy arrays: github.com/kimiyoung/planetoid, Kipf's gcn README; Kipf's .tolil() is
# processing, not a file), and its rows are object arrays of lists, which no part may hold.
_SPARSE_CLASSES = {
    ("scipy.sparse.csr", "csr_matrix"): _CsrRecord,
    ("scipy.sparse._csr", "csr_matrix"): _CsrRecord,
    ("scipy.sparse.csc", "csc_matrix"): _CscRecord,
    ("scipy.sparse._csc", "csc_matrix"): _CscRecord,
}


class _PlanetoidUnpickler(ArrayUnpickler):
    """Planetoid files are Python 2 pickles of scipy sparse matrices, numpy arrays and a
    dict of adjacency lists; nothing else may load (a tampered file cannot run code), and a
    sparse matrix loads as a :class:`_SparseRecord`."""

    ALLOWED = ArrayUnpickler.ALLOWED | frozenset(
        {
            ("collections", "defaultdict"),
            ("__builtin__", "list"),
            ("builtins", "list"),
        }
    )

    def find_class(self, module: str, name: str):  # type: ignore[override]
        record = _SPARSE_CLASSES.get((module, name))
        return record if record is not None else super().find_class(module, name)


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
    return load_pickle(
        path, limit=PART_BYTES, what="planetoid", unpickler=_PlanetoidUnpickler, encoding="latin1"
    )


def _is_index(value: object) -> bool:
    """A non-negative Python or numpy integer (not a bool)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 0


def _describe(value: object) -> str:
    """A value for a message, never its repr: a forged one may be megabytes long, or nested
    deeper than repr recurses."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value)) if abs(int(value)) < 10**15 else "a huge integer"
    if isinstance(value, _SparseRecord):
        return f"a scipy {value.FORMAT} matrix"
    name = "numpy array" if isinstance(value, np.ndarray) else type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _array(value: object, where: Path, what: str, *, ndim: int, kinds: str) -> np.ndarray:
    """``value`` if it is a numpy array of ``ndim`` dimensions whose dtype kind is one of
    ``kinds`` (b bool, i u integers, f floats): object arrays (any Python objects),
    strings and records are refused, and floats must be finite."""
    if not isinstance(value, np.ndarray):
        raise DataError(f"{where}: expected a numpy array as {what}, found {_describe(value)}")
    if value.dtype.hasobject or value.dtype.kind not in kinds:
        raise DataError(
            f"{where}: {value.dtype.name} values in {what}; planetoid reads only numeric arrays "
            f"(bool, integer, float), never Python objects"
        )
    if value.ndim != ndim:
        raise DataError(f"{where}: {what} must be {ndim}-D, not {value.ndim}-D")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise DataError(f"{where}: NaN or infinite values in {what}")
    return value


def _shape(value: object, where: Path) -> tuple[int, int]:
    """A sparse matrix's declared shape, refused before anything is sized by it."""
    if not (isinstance(value, tuple | list) and len(value) == 2 and all(map(_is_index, value))):
        shown = (
            f"({', '.join(map(_describe, value))})"
            if isinstance(value, tuple | list) and len(value) <= 4
            else _describe(value)
        )
        raise DataError(f"{where}: its shape is {shown}, not two non-negative integers")
    rows, cols = int(value[0]), int(value[1])
    if rows * cols > DENSE_ELEMENTS:
        raise DataError(
            f"{where}: a {rows:,} x {cols:,} matrix is more than {DENSE_ELEMENTS:,} elements, "
            f"the most planetoid makes dense (PubMed's features are 19,717 x 500)"
        )
    return rows, cols


def _compressed(state: dict, where: Path, major: int, minor: int) -> tuple[np.ndarray, ...]:
    """``data, indices, indptr`` of a csr (csc) matrix with ``major`` rows (columns) of
    ``minor`` entries, with every invariant scipy's kernels assume checked."""
    data = _array(state.get("data"), where, "its data", ndim=1, kinds="biuf")
    indices, indptr = (
        _array(state.get(k), where, f"its {k}", ndim=1, kinds="iu").astype(np.int64)
        for k in ("indices", "indptr")
    )
    nnz = len(data)
    if len(indptr) != major + 1 or len(indices) != nnz:
        raise DataError(
            f"{where}: its indptr ({len(indptr):,}), indices ({len(indices):,}) and data "
            f"({nnz:,}) do not fit its {major:,} compressed rows (a damaged or forged file)"
        )
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise DataError(
            f"{where}: its indptr does not rise from 0 to {nnz:,} (a damaged or forged file)"
        )
    if nnz and (indices.min() < 0 or indices.max() >= minor):
        raise DataError(f"{where}: an index lies outside 0..{minor - 1} (a damaged or forged file)")
    return data, indices, indptr


def _sparse(record: _SparseRecord, where: Path):  # -> scipy.sparse.spmatrix
    import scipy.sparse as sp  # 0.3 s to import: only when a Planetoid graph is read

    state = record.state
    if not isinstance(state, dict):
        raise DataError(f"{where}: a {record.FORMAT} matrix without its arrays")
    rows, cols = _shape(state.get("_shape", state.get("shape")), where)
    csr = record.FORMAT == "csr"
    arrays = _compressed(state, where, *((rows, cols) if csr else (cols, rows)))
    # built from checked arrays only; scipy's constructor checks them again (check_format)
    return (sp.csr_matrix if csr else sp.csc_matrix)(arrays, shape=(rows, cols))


def _features(part: object, where: Path):  # -> np.ndarray | scipy.sparse.spmatrix
    if isinstance(part, _SparseRecord):
        return _sparse(part, where)
    if not isinstance(part, np.ndarray):
        raise DataError(
            f"{where}: expected a scipy sparse matrix or a numpy array of features, found "
            f"{_describe(part)}"
        )
    return _array(part, where, "the features", ndim=2, kinds="biuf")


def _labels(part: object, where: Path) -> np.ndarray:
    labels = _array(part, where, "the one-hot labels", ndim=2, kinds="biuf")
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{where}: labels other than 0 and 1 (Planetoid labels are one-hot rows)")
    return labels


def _read_test_index(path: Path, first: int) -> np.ndarray:
    """The test nodes, one a line: unique integers numbering the nodes after allx's
    ``first`` rows, where Kipf's layout puts tx's rows. A smaller smallest entry (a negative
    one included) names a node of allx; a larger one puts the largest past the rows Kipf's
    processing builds (allx's, then the span of test.index)."""
    data = file_bytes(path, TEST_INDEX_BYTES, "planetoid")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; it is refused below
            index = np.loadtxt(io.BytesIO(data), dtype=np.int64, ndmin=1)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"cannot read {path} ({one_line(exc)})") from None
    if index.ndim != 1:
        raise DataError(f"{path} must hold one test node a line, not {index.shape[1]}")
    if not index.size:
        raise DataError(f"{path} names no test node")
    if index.min() != first:
        raise DataError(
            f"{path} must number the test nodes from {first:,}, right after allx's {first:,} "
            f"rows (its smallest is {index.min():,})"
        )
    if len(np.unique(index)) != len(index):
        raise DataError(f"{path} names a test node twice")
    return index


def _check_sizes(parts: dict, stem: str, tests: int) -> None:
    """x/y, allx/ally and tx/ty/test.index agree on rows, features and labels on columns."""
    for group, what in ((("x", "tx", "allx"), "features"), (("y", "ty", "ally"), "classes")):
        widths = [parts[p].shape[1] for p in group]
        if len(set(widths)) > 1 or not widths[0]:
            raise DataError(
                f"{stem}.{{{','.join(group)}}} must agree on a number of {what} above 0 "
                f"(they hold {', '.join(map(str, widths))})"
            )
    if parts["tx"].shape[0] != tests or parts["ty"].shape[0] != tests:
        raise DataError(f"{stem}.tx/ty and test.index disagree on the number of test nodes")
    for a, b in (("x", "y"), ("allx", "ally")):
        if parts[a].shape[0] != parts[b].shape[0]:
            raise DataError(
                f"{stem}.{a} has {parts[a].shape[0]:,} rows but {stem}.{b} has "
                f"{parts[b].shape[0]:,} (one row of labels for each row of features)"
            )
    if parts["y"].shape[0] > parts["allx"].shape[0]:
        raise DataError(
            f"{stem}.y labels {parts['y'].shape[0]:,} training nodes but allx holds only "
            f"{parts['allx'].shape[0]:,} rows (the training nodes are allx's first)"
        )


def _edges(graph: object, nodes: int, where: Path) -> np.ndarray:
    """The edges of the adjacency dict ``{node: [neighbours]}``, both directions. An entry
    naming a node past the last is dropped (it has no row)."""
    if not isinstance(graph, dict):
        raise DataError(f"{where}: expected a dict of adjacency lists, found {_describe(graph)}")
    for u, vs in graph.items():
        if not _is_index(u):
            raise DataError(f"{where}: a node is {_describe(u)}, not a non-negative integer")
        if not isinstance(vs, list | tuple):
            raise DataError(f"{where}: the neighbours of node {u} are {_describe(vs)}, not a list")
    if sum(map(len, graph.values())) > GRAPH_ENTRIES:
        raise DataError(
            f"{where} lists more than {GRAPH_ENTRIES:,} neighbours, the most planetoid reads "
            f"(PubMed has 88,648 directed edges)"
        )
    src: list[int] = []
    dst: list[int] = []
    for u, vs in graph.items():
        if not all(map(_is_index, vs)):
            bad = next(v for v in vs if not _is_index(v))
            raise DataError(
                f"{where}: node {u} lists the neighbour {_describe(bad)}, not a non-negative "
                f"integer"
            )
        kept = [int(v) for v in vs if v < nodes] if u < nodes else []
        src += [int(u)] * len(kept)
        dst += kept
    edges = np.array([src, dst], dtype=np.int64).reshape(2, -1)
    return np.concatenate([edges, edges[::-1]], axis=1)  # undirected


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else matrix


def load_planetoid(root: Path, download: bool) -> GraphArrays:
    """The standard processing (Kipf's ``load_data``): features are allx then tx in the
    order of ``test.index``; the train nodes are the first ``len(y)`` (20 per class), the
    test nodes those of ``test.index``. Citeseer's isolated test nodes get zero rows."""
    if download:
        raise DataError("planetoid is user-provided: set data.root to its files")
    folder, name = planetoid_folder(root)
    stem = f"{folder}/ind.{name}"
    raw = {p: _read_part(Path(f"{stem}.{p}")) for p in PLANETOID_PARTS}
    parts = {p: _features(raw[p], Path(f"{stem}.{p}")) for p in ("x", "tx", "allx")}
    parts |= {p: _labels(raw[p], Path(f"{stem}.{p}")) for p in ("y", "ty", "ally")}
    test_index = _read_test_index(Path(f"{stem}.test.index"), parts["allx"].shape[0])
    _check_sizes(parts, stem, len(test_index))
    # Kipf stacks allx with the test rows spread over min..max of test.index; row j of
    # tx belongs to node test_index[j] (file order). Nodes in that span without a row
    # (Citeseer's isolated nodes) keep zero features and are in neither set.
    nodes = parts["allx"].shape[0] + int(test_index.max() - test_index.min() + 1)
    width = max(parts["allx"].shape[1], parts["ally"].shape[1])
    if nodes * width > DENSE_ELEMENTS:
        raise DataError(
            f"{stem}.* describe {nodes:,} nodes x {width:,} features or classes, more than "
            f"{DENSE_ELEMENTS:,} elements, the most planetoid makes dense (Citeseer, the "
            f"largest of Cora, Citeseer and PubMed, is 3,327 x 3,703)"
        )
    edges = _edges(raw["graph"], nodes, Path(f"{stem}.graph"))
    return _assemble(parts, test_index, nodes, edges)


def _assemble(parts: dict, test_index: np.ndarray, nodes: int, edges: np.ndarray) -> GraphArrays:
    allx, tx = _dense(parts["allx"]), _dense(parts["tx"])
    ally, ty = parts["ally"], parts["ty"]
    features = np.zeros((nodes, allx.shape[1]), dtype=np.float32)
    onehot = np.zeros((nodes, ally.shape[1]), dtype=np.float32)
    features[: len(allx)], onehot[: len(ally)] = allx, ally
    features[test_index], onehot[test_index] = tx, ty
    row_sums = features.sum(1, keepdims=True)
    features = features / np.where(row_sums > 0, row_sums, 1)  # row-normalised, as Kipf
    return GraphArrays(
        features=features.astype(np.float32),
        labels=onehot.argmax(1).astype(np.int64),
        edges=edges,
        train_nodes=np.arange(len(parts["y"])),
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
