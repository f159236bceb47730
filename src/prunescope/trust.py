"""Whose code runs (docs/guide.md, "Code runs only when you vouch for it"): code named by a run directory, a branch or an export is
imported only when the person running the command vouches for it.

A run directory may come from someone else. Its ``config.toml`` can name any importable
callable in ``model.name`` (``"os:abort"``, ``"code:interact"``), and ``imp.prunable_types``
and ``analysis.plugins`` name more code; an export's ``architecture.json`` names a model
too. Opening such a folder must not run that code. A name is vouched for when

- the command's own config names it (``--preset``, ``--config``, ``--set``, a sweep file,
  or a :class:`~prunescope.config.Config` built in the caller's own Python code),
- the command says ``--trust-code`` (or ``trust_code=True`` in the Python API), which
  vouches for every name, or
- ``PRUNESCOPE_TRUST_CODE`` lists it: ``all``, or comma-separated names and module
  prefixes (``mypkg`` vouches for ``mypkg.models:make`` and ``mypkg:Block``).

Where a vouched module may come from: ``sys.path`` as the interpreter has it (installed
packages, ``PYTHONPATH``), except the working directory that ``python -m``/``-c`` put
in front of it implicitly (name it in ``PYTHONPATH`` to use it), and never a file inside
a run directory or export that this process opened: a module shipped with the data it
describes is the data's code, not the user's.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path

from prunescope.errors import UserInputError

ENV = "PRUNESCOPE_TRUST_CODE"
EVERYTHING = "all"


@dataclass(frozen=True)
class Trust:
    everything: bool = False
    names: frozenset[str] = frozenset()
    # folders of data this process opened (run directories, exports): never a module's home
    data_folders: frozenset[Path] = field(default_factory=frozenset)

    def vouches_for(self, path: str) -> bool:
        if self.everything:
            return True
        module = path.partition(":")[0]
        return any(path == n or module == n or module.startswith(f"{n}.") for n in self.names)


# What this command added: vouched names, --trust-code, opened data folders. The
# environment is read at every check, never copied in (a test or a long-lived Python
# process may change it).
_TRUST: ContextVar[Trust | None] = ContextVar("prunescope_trust", default=None)


def from_environment() -> Trust:
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() in (EVERYTHING, "1", "true", "yes"):
        return Trust(everything=True)
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    return Trust(names=names)


def _added() -> Trust:
    return _TRUST.get() or Trust()


def current() -> Trust:
    """What is vouched for now: this command's additions and the environment's."""
    added, env = _added(), from_environment()
    return replace(
        added, everything=added.everything or env.everything, names=added.names | env.names
    )


def _update(**changes: object) -> None:
    _TRUST.set(replace(_added(), **changes))


@contextlib.contextmanager
def scope(*, everything: bool = False) -> Iterator[None]:
    """One command's trust (``--trust-code`` vouches for everything); what the command
    vouches for inside ends with it."""
    token = _TRUST.set(Trust(everything=everything))
    try:
        yield
    finally:
        _TRUST.reset(token)


@contextlib.contextmanager
def trusting(enabled: bool) -> Iterator[None]:
    """``trust_code=True`` of a Python API call: every name, for this call only."""
    if not enabled:
        yield
        return
    token = _TRUST.set(replace(_added(), everything=True))
    try:
        yield
    finally:
        _TRUST.reset(token)


def vouch(names: Iterable[str]) -> None:
    """The caller's own config names these: they may be imported from now on."""
    new = frozenset(n for n in names if n)
    if not new <= _added().names:
        _update(names=_added().names | new)


def opened_data_folder(folder: Path) -> None:
    """A run directory or export was opened: no module is ever imported from inside it."""
    resolved = Path(folder).resolve()
    if resolved not in _added().data_folders:
        _update(data_folders=_added().data_folders | {resolved})


def code_names(cfg: object) -> list[str]:
    """The code a config (or the raw dict of ``--set`` items) asks prunescope to import:
    ``model.name`` when it is ``package.module:name``, ``imp.prunable_types`` and
    ``analysis.plugins``."""

    def get(section: str, key: str) -> object:
        part = cfg.get(section, {}) if isinstance(cfg, dict) else getattr(cfg, section, None)
        if isinstance(part, dict):
            return part.get(key)
        return getattr(part, key, None)

    model = get("model", "name")
    names = [model] if isinstance(model, str) and ":" in model else []
    for section, key in (
        ("imp", "prunable_types"),
        ("analysis", "plugins"),
        ("imp", "neuron_axes"),
    ):
        value = get(section, key)
        if isinstance(value, list | tuple | dict):  # a dict: its keys name the types
            names.extend(v for v in value if isinstance(v, str))
    return names


def require_trusted(path: str, what: str) -> None:
    if current().vouches_for(path):
        return
    module = path.partition(":")[0]
    raise UserInputError(
        f"{what} {path!r} names code that prunescope imports only when you vouch for it: "
        f"rerun with --trust-code (trust_code=True in Python), set {ENV}={module}, or give "
        f"the same {what.split()[0]} in your own --config/--set"
    )


def _search_path() -> list[str]:
    """``sys.path`` without the working directory that ``python -m``/``-c`` (and a
    script's own folder) put first implicitly; kept where PYTHONPATH names it again."""
    paths = list(sys.path)
    if paths and not getattr(sys.flags, "safe_path", False):
        first = paths[0]
        implicit = first in ("", os.getcwd()) or (
            sys.argv and sys.argv[0] and Path(first) == Path(sys.argv[0]).resolve().parent
        )
        if implicit and first not in paths[1:]:
            paths = paths[1:]
    return paths


def _module_home(module_name: str, search: list[str]) -> Path | None:
    """Where the top-level package of ``module_name`` lives, without importing it."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None:
        where = getattr(loaded, "__file__", None) or next(
            iter(getattr(loaded, "__path__", [])), None
        )
        return Path(where).resolve() if where else None
    spec = importlib.machinery.PathFinder.find_spec(top, search)
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return Path(spec.origin).resolve()
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]).resolve() if locations else None


def check_home(path: str, module_name: str, what: str) -> None:
    """``module_name`` must not come from inside a run directory or export this process
    opened (checked at every use: an import is cached)."""
    home = _module_home(module_name, _search_path())
    if home is None:
        return
    for folder in current().data_folders:
        if home == folder or folder in home.parents:
            raise UserInputError(
                f"{what} {path!r}: {module_name} would be imported from {home}, inside "
                f"{folder}, which prunescope opened as data; install the module or put "
                f"its folder on PYTHONPATH"
            )


def import_trusted(path: str, module_name: str, what: str) -> object:
    """Import ``module_name`` for the vouched ``path`` from the search path above."""
    require_trusted(path, what)
    check_home(path, module_name, what)
    search = _search_path()
    removed = [p for p in sys.path if p not in search]
    sys.path[:] = [p for p in sys.path if p in search]
    try:
        return importlib.import_module(module_name)
    finally:  # put back what was left out; whatever the module added stays
        sys.path[:0] = [p for p in removed if p not in sys.path]
