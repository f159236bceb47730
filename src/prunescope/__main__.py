import sys

from prunescope.cli import main

sys.exit(main())
