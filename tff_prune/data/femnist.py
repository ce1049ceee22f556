"""FEMNIST through TFF's own loader, offline.

``tff.simulation.datasets.emnist.load_data(only_digits=False, cache_dir=D)`` reads
``D/emnist_all.sqlite`` without network access when that file exists. This module
builds that SQLite file once from the packed real data
(``femnist_leaf_300w.npz``: 300 LEAF writers, see ``../shared/data/README.md``),
atomically (temporary file + ``os.replace``), and then uses TFF's loader unchanged.
Users with internet may instead point ``--data-dir`` at nothing and let TFF
download the full 3,400-writer set (see README).

Pixel convention (TFF and LEAF): float32 in [0, 1], 1.0 = background, 0.0 = ink.
Labels: int32 in [0, 62): digits 0-9, 'A'-'Z' 10-35, 'a'-'z' 36-61.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tff_prune.data.client_data import (DataError, FederatedData, default_cache_root, file_digest, fix_hint,
                                        ensure_sqlite, packed_file, read_npz, write_sqlite)

PACKED_FILE = "femnist_leaf_300w.npz"
SQLITE_FILE = "emnist_all.sqlite"  # the name TFF's emnist.load_data looks for
TRAIN_SPLIT, TEST_SPLIT = "all_train", "all_test"
_REQUIRED_KEYS = ("client_ids", "train_pixels_u8", "train_labels", "train_offsets",
                  "test_pixels_u8", "test_labels", "test_offsets")
NUM_CLASSES = 62
LABEL_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def packed_path(data_dir: str) -> str:
    """Path of the packed FEMNIST file in ``data_dir``; raises DataError if absent."""
    return packed_file(data_dir, PACKED_FILE, "FEMNIST")


def load_packed(data_dir: str) -> dict[str, np.ndarray]:
    """Loads and validates the packed FEMNIST arrays.

    Returns:
      dict with ``client_ids`` (N,) str, ``{train,test}_pixels_u8`` (M,28,28) uint8,
      ``{train,test}_labels`` (M,) int, ``{train,test}_offsets`` (N+1,) int64.

    Raises:
      DataError: file missing, not a valid ``.npz``, keys missing, or shapes inconsistent.
    """
    path = packed_path(data_dir)
    arrays = read_npz(path, _REQUIRED_KEYS, "FEMNIST", data_dir)
    n = len(arrays["client_ids"])
    for split in ("train", "test"):
        px, lab, off = (arrays[f"{split}_pixels_u8"], arrays[f"{split}_labels"], arrays[f"{split}_offsets"])
        ok = (px.ndim == 3 and px.shape[1:] == (28, 28) and len(lab) == len(px) and off.shape == (n + 1,)
              and off[0] == 0 and off[-1] == len(px) and np.all(np.diff(off) >= 0)
              and (len(lab) == 0 or (lab.min() >= 0 and lab.max() < NUM_CLASSES)))
        if not ok:
            raise DataError(f"FEMNIST data file {path} is corrupt: inconsistent {split} arrays "
                            f"(pixels {px.shape}, labels {lab.shape}, offsets {off.shape} for {n} clients). "
                            f"Replace it with a good copy. {fix_hint(PACKED_FILE, data_dir)}")
    return arrays


def sample_images(data_dir: str, split: str = "train", n: int = 200, seed: int = 0,
                  crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real examples drawn uniformly (seeded) from all writers' ``split`` examples.

    Used for TFLite calibration (representative dataset) and parity checks.

    Returns:
      x float32 ``(n, 28, 28, 1)`` in [0, 1] (cropped like :func:`preprocess` if ``crop``),
      y int32 ``(n,)``.

    Raises:
      DataError: file missing or corrupt. ValueError: bad ``split`` or ``n``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    arrays = load_packed(data_dir)
    px, lab = arrays[f"{split}_pixels_u8"], arrays[f"{split}_labels"]
    if not 1 <= n <= len(px):
        raise ValueError(f"n must be in [1, {len(px)}], got {n}")
    idx = np.sort(np.random.default_rng(seed).choice(len(px), size=n, replace=False))
    x = px[idx, :, :, None].astype(np.float32) / np.float32(255.0)
    if crop:
        x = tf.image.resize(x[:, 5:20, 5:20, :], (28, 28), method="bilinear").numpy()
    return x, lab[idx].astype(np.int32)


def _example_proto(pixels_u8: np.ndarray, label: int) -> bytes:
    pixels = (pixels_u8.astype(np.float32) / np.float32(255.0)).reshape(-1)
    feature = {
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=pixels)),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def build_sqlite_cache(data_dir: str, cache_root: Optional[str] = None) -> str:
    """Builds (once) the ``emnist_all.sqlite`` file TFF's loader expects; returns its folder.

    The folder is ``<cache_root>/femnist-<sha256 of the packed file>`` so a changed
    data file gets a new cache. The database is written to a temporary file in the
    same folder and renamed into place, so an interrupted build leaves no partial file.
    Layout (TFF 0.87 ``SqlClientData``): tables ``examples(split_name, client_id,
    serialized_example_proto)`` and ``client_metadata(client_id, split_name, num_examples)``;
    splits ``all_train``/``all_test``; protos with ``pixels`` (784 floats) and ``label`` (int64).

    Raises:
      DataError: the packed file is missing or corrupt.
    """
    path = packed_path(data_dir)
    cache_dir = os.path.join(cache_root or default_cache_root(), f"femnist-{file_digest(path)}")
    db_path = os.path.join(cache_dir, SQLITE_FILE)

    def build():
        arrays = load_packed(data_dir)
        os.makedirs(cache_dir, exist_ok=True)

        def rows():
            for split, name in (("train", TRAIN_SPLIT), ("test", TEST_SPLIT)):
                px, lab, off = arrays[f"{split}_pixels_u8"], arrays[f"{split}_labels"], arrays[f"{split}_offsets"]
                for i, cid in enumerate(arrays["client_ids"]):
                    lo, hi = int(off[i]), int(off[i + 1])
                    yield name, str(cid), [_example_proto(px[j], lab[j]) for j in range(lo, hi)]

        write_sqlite(db_path, rows())

    ensure_sqlite(db_path, build, "FEMNIST")
    return cache_dir


def preprocess(element, crop: bool = False):
    """Maps a TFF EMNIST element to ``(x, y)``: x float32 (28,28,1), y int32 scalar.

    With ``crop`` the authors' crop ``pixels[5:20, 5:20]`` is resized back to 28x28
    (bilinear), as in the paper's public FEMNIST notebooks.
    """
    x = tf.reshape(tf.cast(element["pixels"], tf.float32), (28, 28, 1))
    if crop:
        x = tf.image.resize(x[5:20, 5:20, :], (28, 28), method="bilinear")
    y = tf.cast(tf.reshape(element["label"], ()), tf.int32)
    return x, y


def load_femnist(data_dir: str, cache_root: Optional[str] = None, crop: bool = False,
                 max_clients: Optional[int] = None) -> FederatedData:
    """Loads FEMNIST (62 classes) with TFF's ``emnist.load_data`` from the offline cache.

    Args:
      data_dir: folder with ``femnist_leaf_300w.npz``.
      cache_root: where the SQLite cache is built (default :func:`default_cache_root`).
      crop: apply the authors' ``[5:20, 5:20]`` crop (``--femnist-crop``).
      max_clients: keep only the first N writers (sorted by id); None keeps all.

    Raises:
      DataError: the packed file is missing or corrupt.
    """
    import tensorflow_federated as tff  # imported here: the pruning engine must not need TFF

    cache_dir = build_sqlite_cache(data_dir, cache_root)
    train, test = tff.simulation.datasets.emnist.load_data(only_digits=False, cache_dir=cache_dir)
    ids = sorted(train.client_ids)
    if max_clients is not None:
        ids = ids[:max_clients]
    return FederatedData(train=train, test=test, client_ids=ids, preprocess_fn=functools.partial(preprocess, crop=crop),
                         name="femnist")
