"""Client-partitioned data through TFF's own loaders, built offline from packed files.

:func:`load` and :func:`sample_images` dispatch on the data set name (``femnist``, ``celeba``); ``catalog``
owns the data set names and the data folder (``--data-dir``, ``$TFF_PRUNE_DATA_DIR``, ``../shared/data``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tff_prune.data.catalog import DATA_DIR_ENV, DATASETS, resolve_data_dir

_LAZY = {"DataError": "client_data", "FederatedData": "client_data", "load_femnist": "femnist",
         "preprocess": "femnist"}


def __getattr__(name: str):
    """The TensorFlow-backed names, imported on first use (PEP 562): ``catalog`` stays importable without TF."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tff_prune.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tff_prune.data' has no attribute {name!r}")


def load(dataset: str, data_dir: str, max_clients: Optional[int] = None, femnist_crop: bool = False,
         celeba_attribute: str = "male") -> "FederatedData":
    """Loads ``dataset`` through TFF's loader from the offline cache (built on first use).

    Raises:
      DataError: the packed file is missing or corrupt. ValueError: unknown data set or attribute.
    """
    if dataset == "femnist":
        from tff_prune.data.femnist import load_femnist

        return load_femnist(data_dir, crop=femnist_crop, max_clients=max_clients)
    if dataset == "celeba":
        from tff_prune.data.celeba import load_celeba

        return load_celeba(data_dir, attribute=celeba_attribute, max_clients=max_clients)
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def sample_images(dataset: str, data_dir: str, split: str = "train", n: int = 200, seed: int = 0,
                  femnist_crop: bool = False, celeba_attribute: str = "male") -> tuple[np.ndarray, np.ndarray]:
    """``n`` real examples (seeded) of ``dataset``'s ``split``: x float32 ``(n, H, W, C)``, y int32 ``(n,)``.

    Used for TFLite calibration (representative data), parity checks and benchmarks.

    Raises:
      DataError: file missing or corrupt. ValueError: bad data set, split or ``n``.
    """
    if dataset == "femnist":
        from tff_prune.data import femnist

        return femnist.sample_images(data_dir, split, n, seed=seed, crop=femnist_crop)
    if dataset == "celeba":
        from tff_prune.data import celeba

        return celeba.sample_images(data_dir, split, n, seed=seed, attribute=celeba_attribute)
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


__all__ = ["DATASETS", "DATA_DIR_ENV", "DataError", "FederatedData", "load", "load_femnist", "preprocess", "resolve_data_dir", "sample_images"]
