"""Entry point of the Bazel py_test targets: runs pytest on the test file(s) given as arguments.

Bazel runs a py_test's main file; ours are pytest modules, so each target runs this file with its
module as argument (see BUILD). The project root (the runfiles workspace) is the rootdir, so
conftest.py and pyproject.toml apply as in `make test`.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", root] + sys.argv[1:]))
