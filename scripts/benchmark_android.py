#!/usr/bin/env python3
"""TFLite latency on an Android device over adb: ``mobile.cli.benchmark_android`` (installed as ``tff-prune-benchmark-android``; ``--help`` lists the flags)."""

import sys

from mobile.cli.benchmark_android import main

if __name__ == "__main__":
    sys.exit(main())
