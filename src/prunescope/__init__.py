"""prunescope: Iterative Magnitude Pruning with rewinding, and the structure it leaves behind.

The Python API (docs/guide.md, "Python API"): ``run``, ``analyze``, ``tables``,
``build_model``, ``load_level``, ``load_test_set``, ``load_exported``.

The public names are imported on first use, so that ``prunescope --help`` and
argument errors do not wait for torch (measured: 2.2 s of a 2.6 s ``--help``).
"""

# No ``from __future__ import annotations`` and no typing import here: either would add a
# name (``annotations``, ``Any``) to the package that is not part of its API.

__version__ = "0.1.0"

_PUBLIC = {
    "run": "prunescope.api",
    "analyze": "prunescope.api",
    "tables": "prunescope.api",
    "build_model": "prunescope.models",
    "load_level": "prunescope.api",
    "load_test_set": "prunescope.api",
    "load_exported": "prunescope.export_files",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'prunescope' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only: not the submodules an import has loaded, nor the helpers."""
    return sorted(__all__)
