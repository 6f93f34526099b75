"""`python -m proxy ARGS` runs the `pareto` command line, like the console script."""

from __future__ import annotations

import sys

from proxy.cli import main

sys.exit(main())
