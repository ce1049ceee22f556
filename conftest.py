"""pytest set-up for the whole project (tff_prune and mobile are imported from the `pip install -e .` of `make setup`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
