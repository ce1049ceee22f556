#!/bin/sh
# No-op stand-in for Bazel's coverage tools (see ../README.md).
exit 0
