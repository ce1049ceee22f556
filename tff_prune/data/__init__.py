"""Client-partitioned data through TFF's own loaders, built offline from packed files.

:func:`load` and :func:`sample_images` dispatch on the data set name (``femnist``, ``celeba``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tff_prune.data.client_data import DataError, FederatedData
from tff_prune.data.femnist import load_femnist, preprocess

DATASETS = ("femnist", "celeba")


def load(dataset: str, data_dir: str, max_clients: Optional[int] = None, femnist_crop: bool = False,
         celeba_attribute: str = "male") -> FederatedData:
    """Loads ``dataset`` through TFF's loader from the offline cache (built on first use).

    Raises:
      DataError: the packed file is missing or corrupt. ValueError: unknown data set or attribute.
    """
    if dataset == "femnist":
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


__all__ = ["DATASETS", "DataError", "FederatedData", "load", "load_femnist", "preprocess", "sample_images"]
