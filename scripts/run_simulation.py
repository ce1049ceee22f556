#!/usr/bin/env python3
"""Federated training with server-side filter pruning (or FedAvg): ``tff_prune.cli.run`` (installed as ``tff-prune-run``; ``--help`` lists the flags)."""

import sys

from tff_prune.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
