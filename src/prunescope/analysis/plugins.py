"""A user's own analyses (``analysis.plugins = ["mypkg.mymeasure"]``): modules that call
:func:`~prunescope.analysis.registry.register_analysis` when imported.

A plugin is code, named by a config: it is imported only when the person running the
command vouches for it, exactly as a user model is (:mod:`prunescope.trust`), and only
joins the analyses of a run whose config names it. ``docs/extending.md`` holds a complete
example.
"""

from __future__ import annotations

import re

from prunescope.errors import UserInputError
from prunescope.trust import check_home, import_trusted, require_trusted

WHAT = "analysis.plugins entry"


def load_plugins(names: list[str]) -> None:
    """Import every plugin module (once; the trust check every time)."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", name):
            raise UserInputError(f"{WHAT} {name!r} must be a module name like mypkg.mymeasure")
        require_trusted(name, WHAT)
        check_home(name, name, WHAT)
        try:
            import_trusted(name, name, WHAT)
        except UserInputError:
            raise
        except Exception as exc:  # the plugin's own code may raise anything while importing
            raise UserInputError(
                f"{WHAT} {name!r}: cannot import it ({type(exc).__name__}: {exc}); is its "
                f"folder on PYTHONPATH?"
            ) from None
