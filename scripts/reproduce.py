#!/usr/bin/env python3
"""The paper's experiments: ``tff_prune.cli.reproduce`` (installed as ``tff-prune-reproduce``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
