"""Importing this module registers every pruning method (one module each)."""

# isort: off
from prunescope.pruning import magnitude  # noqa: F401  (registration; the default first)
from prunescope.pruning import complete  # noqa: F401
from prunescope.pruning import group  # noqa: F401

# isort: on
