#!/usr/bin/env python3
"""Keras model to TFLite variants: ``mobile.cli.convert`` (installed as ``tff-prune-convert``; ``--help`` lists the flags)."""

import sys

from mobile.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
