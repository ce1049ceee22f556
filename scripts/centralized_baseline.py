#!/usr/bin/env python3
"""The centralized reference: ``tff_prune.cli.centralized`` (installed as ``tff-prune-centralized``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.centralized import main

if __name__ == "__main__":
    sys.exit(main())
