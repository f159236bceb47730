"""The analyses of a run's levels. Importing this package registers every one of them,
in the order ``analyze`` runs them (the cheap ones that read weights only first) and the
report gives them; a new analysis is its module and one line here."""

# isort: off
from prunescope.analysis import accuracy  # noqa: F401  (registration)
from prunescope.analysis import sparsity  # noqa: F401
from prunescope.analysis import weights  # noqa: F401
from prunescope.analysis import zeroing  # noqa: F401
from prunescope.analysis import similarity  # noqa: F401
from prunescope.analysis import connectivity  # noqa: F401
from prunescope.analysis import export_table  # noqa: F401
from prunescope.runtime import analysis as runtime  # noqa: F401
from prunescope.analysis import iterative_zeroing  # noqa: F401
from prunescope.analysis import controls  # noqa: F401  (a report part, drawn last)

# isort: on
