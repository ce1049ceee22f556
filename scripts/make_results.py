#!/usr/bin/env python3
"""Docs/RESULTS.md from results/: ``tff_prune.cli.results`` (installed as ``tff-prune-results``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.results import main

if __name__ == "__main__":
    sys.exit(main())
