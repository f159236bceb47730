"""prunescope: Iterative Magnitude Pruning with rewinding, and the structure it leaves behind."""

from prunescope.models import build_model

__version__ = "0.1.0"

__all__ = ["__version__", "build_model"]
