"""``parallel-lstm report``: build the course report (see reports/build.py)."""
import sys

from .build import main

sys.exit(main())
