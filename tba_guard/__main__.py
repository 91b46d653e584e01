"""`python -m tba_guard`: the `tba-guard` command, for an environment without its script."""

from __future__ import annotations

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
