"""Which data sets exist and where their packed files are: :data:`DATASETS`, :data:`DATA_DIR_ENV`,
:func:`resolve_data_dir`. Standard library only, so configuration and command lines can use it without
importing TensorFlow.
"""

from __future__ import annotations

import os
from typing import Optional

DATASETS = ("femnist", "celeba")
DATA_DIR_ENV = "TFF_PRUNE_DATA_DIR"
# ../shared/data beside the checkout (the project root is the parent of the tff_prune package).
DEFAULT_DATA_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                                 os.pardir, os.pardir, "shared", "data"))


def resolve_data_dir(flag_value: Optional[str]) -> str:
    """Returns the directory holding the packed data files (an absolute path; not checked here).

    Order: the ``--data-dir`` flag, else the ``TFF_PRUNE_DATA_DIR`` environment variable, else ``../shared/data``
    next to the project root (:data:`DEFAULT_DATA_DIR`; a wheel installed elsewhere needs one of the first two).
    """
    if flag_value:
        return os.path.abspath(os.path.expanduser(flag_value))
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return DEFAULT_DATA_DIR
