#!/usr/bin/env python3
"""A TFF worker for --workers: ``tff_prune.cli.worker`` (installed as ``tff-prune-worker``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.worker import main

if __name__ == "__main__":
    sys.exit(main())
