"""`python -m cyclegan` runs the command-line interface."""

import sys

from .cli.entry import main

sys.exit(main())
