#!/usr/bin/env python3
"""TFLite latency on this host: ``mobile.cli.benchmark_host`` (installed as ``tff-prune-benchmark-host``; ``--help`` lists the flags)."""

import sys

from mobile.cli.benchmark_host import main

if __name__ == "__main__":
    sys.exit(main())
