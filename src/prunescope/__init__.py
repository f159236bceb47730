"""prunescope: Iterative Magnitude Pruning with rewinding, and the structure it leaves behind."""

__version__ = "0.1.0"

from prunescope.api import load_level, load_test_set
from prunescope.models import build_model

__all__ = ["__version__", "build_model", "load_level", "load_test_set"]
