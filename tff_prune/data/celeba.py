"""CelebA through TFF's own loader, offline.

``tff.simulation.datasets.celeba.load_data(split_by_clients=True, cache_dir=D)`` reads
``D/celeba.sqlite`` without network access when that file exists. This module builds that
file once from the packed real data (``celeba_wild_crops84_276ids.npz``: 5,863 photos of 276
celebrities, 84x84 RGB, the 40 CelebA attributes; see ``../shared/data/README.md``),
atomically, and then uses TFF's loader unchanged. One client = one celebrity.

Splits written (TFF's names and proportions): ``split_by_clients_train`` / ``_test`` -- a seeded
10% of the celebrities are test clients, all their photos in test (TFF: 8,408 / 935 clients);
``split_by_examples_train`` / ``_test`` -- every celebrity's last 10% of photos (at least one) in test.

Element (TFF): ``image`` int64 ``(84, 84, 3)`` in [0, 255] and 40 bool attributes with TFF's
lower-case names. :func:`preprocess` gives x float32 ``(84, 84, 3)`` = image / 255 and y int32
in {0, 1} for the chosen attribute (default ``male``, as the paper).

Licence: CelebA is for non-commercial research only (Liu et al., ICCV 2015).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tff_prune.data.client_data import (DataError, FederatedData, default_cache_root, file_digest, fix_hint,
                                        ensure_sqlite, packed_file, read_npz, write_sqlite)

PACKED_FILE = "celeba_wild_crops84_276ids.npz"
SQLITE_FILE = "celeba.sqlite"  # the name TFF's celeba.load_data looks for
IMAGE_SHAPE = (84, 84, 3)
TEST_CLIENT_FRACTION = 0.1
SPLIT_SEED = 0
_REQUIRED_KEYS = ("jpeg_bytes", "jpeg_offsets", "celeb_id", "attributes_pm1", "attribute_names")


def tff_attribute_name(celeba_name: str) -> str:
    """TFF's name of a CelebA attribute: lower case, ``5_o_Clock_Shadow`` -> ``five_o_clock_shadow``."""
    name = celeba_name.lower()
    return "five_o_clock_shadow" if name == "5_o_clock_shadow" else name


def attribute_names() -> list[str]:
    """The 40 attribute names as TFF spells them (TFF's ``celeba.ATTRIBUTE_NAMES`` order)."""
    from tensorflow_federated.python.simulation.datasets import celeba as tff_celeba

    return list(tff_celeba.ATTRIBUTE_NAMES)


def packed_path(data_dir: str) -> str:
    """Path of the packed CelebA file in ``data_dir``; raises DataError if absent."""
    return packed_file(data_dir, PACKED_FILE, "CelebA")


def load_packed(data_dir: str) -> dict[str, np.ndarray]:
    """Loads and validates the packed CelebA arrays (JPEGs still encoded).

    Returns:
      dict with ``jpeg_bytes`` uint8, ``jpeg_offsets`` (N+1,) int64, ``celeb_id`` (N,) int,
      ``attributes_pm1`` (N, 40) int8 in {-1, +1}, ``attribute_names`` (40,) str (CelebA spelling).

    Raises:
      DataError: file missing, not a valid ``.npz``, keys missing, or shapes inconsistent.
    """
    path = packed_path(data_dir)
    arrays = read_npz(path, _REQUIRED_KEYS, "CelebA", data_dir)
    n, off = len(arrays["celeb_id"]), arrays["jpeg_offsets"]
    ok = (off.shape == (n + 1,) and off[0] == 0 and off[-1] == len(arrays["jpeg_bytes"])
          and np.all(np.diff(off) > 0) and arrays["attributes_pm1"].shape == (n, len(arrays["attribute_names"]))
          and set(np.unique(arrays["attributes_pm1"])) <= {-1, 1})
    if not ok:
        raise DataError(f"CelebA data file {path} is corrupt: inconsistent arrays (offsets {off.shape}, "
                        f"attributes {arrays['attributes_pm1'].shape} for {n} images). "
                        f"Replace it with a good copy. {fix_hint(PACKED_FILE, data_dir)}")
    return arrays


def decode(arrays: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """Decodes the JPEGs at ``index`` to uint8 ``(len(index), 84, 84, 3)``.

    Raises:
      DataError: an image does not decode to 84x84x3.
    """
    raw, off = arrays["jpeg_bytes"], arrays["jpeg_offsets"]
    out = np.empty((len(index),) + IMAGE_SHAPE, dtype=np.uint8)
    for k, i in enumerate(index):
        try:
            img = tf.io.decode_jpeg(raw[off[i]:off[i + 1]].tobytes(), channels=3).numpy()
        except tf.errors.InvalidArgumentError as e:
            raise DataError(f"CelebA image {i} is not a valid JPEG ({e.message}); "
                            f"the data file is corrupt") from e
        if img.shape != IMAGE_SHAPE:
            raise DataError(f"CelebA image {i} decodes to {img.shape}, expected {IMAGE_SHAPE}; "
                            f"the data file is corrupt")
        out[k] = img
    return out


def client_split(celeb_ids: np.ndarray) -> tuple[list[str], list[str]]:
    """(train, test) client ids for ``split_by_clients``: a seeded 10% of celebrities (at least 1) are test."""
    ids = np.unique(celeb_ids)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
    n_test = max(1, int(round(TEST_CLIENT_FRACTION * len(ids))))
    test = sorted(str(i) for i in ids[perm[:n_test]])
    train = sorted(str(i) for i in ids[perm[n_test:]])
    return train, test


def _example_proto(image_u8: np.ndarray, attributes_pm1: np.ndarray, names: list[str]) -> bytes:
    feature = {"image": tf.train.Feature(int64_list=tf.train.Int64List(value=image_u8.reshape(-1).astype(np.int64)))}
    for name, value in zip(names, attributes_pm1):
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value > 0)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def build_sqlite_cache(data_dir: str, cache_root: Optional[str] = None) -> str:
    """Builds (once) the ``celeba.sqlite`` file TFF's loader expects; returns its folder.

    The folder is ``<cache_root>/celeba-<sha256 of the packed file>``; the database is written
    atomically (see :func:`tff_prune.data.client_data.write_sqlite`). About 200 MB; a minute to build.

    Raises:
      DataError: the packed file is missing or corrupt.
    """
    path = packed_path(data_dir)
    cache_dir = os.path.join(cache_root or default_cache_root(), f"celeba-{file_digest(path)}")
    db_path = os.path.join(cache_dir, SQLITE_FILE)

    def build():
        arrays = load_packed(data_dir)
        names = [tff_attribute_name(str(n)) for n in arrays["attribute_names"]]
        os.makedirs(cache_dir, exist_ok=True)
        celeb = arrays["celeb_id"]
        train_ids, test_ids = client_split(celeb)
        test_set = set(test_ids)

        def rows():
            for cid in sorted({str(c) for c in celeb}, key=int):
                idx = np.flatnonzero(celeb == int(cid))
                protos = [_example_proto(img, arrays["attributes_pm1"][i], names)
                          for img, i in zip(decode(arrays, idx), idx)]
                yield ("split_by_clients_test" if cid in test_set else "split_by_clients_train"), cid, protos
                n_test = max(1, int(round(TEST_CLIENT_FRACTION * len(idx))))
                yield "split_by_examples_train", cid, protos[:-n_test]
                yield "split_by_examples_test", cid, protos[-n_test:]

        write_sqlite(db_path, rows())

    ensure_sqlite(db_path, build, "CelebA")
    return cache_dir


def preprocess(element, attribute: str = "male"):
    """Maps a TFF CelebA element to ``(x, y)``: x float32 (84,84,3) in [0,1], y int32 in {0,1}."""
    x = tf.cast(element["image"], tf.float32) / 255.0
    y = tf.cast(tf.reshape(element[attribute], ()), tf.int32)
    return x, y


def check_attribute(attribute: str) -> str:
    """Returns ``attribute`` if TFF knows it; raises ValueError naming the valid ones otherwise."""
    names = attribute_names()
    if attribute not in names:
        raise ValueError(f"unknown CelebA attribute {attribute!r}; TFF's names: {', '.join(names)}")
    return attribute


def sample_images(data_dir: str, split: str = "train", n: int = 200, seed: int = 0,
                  attribute: str = "male") -> tuple[np.ndarray, np.ndarray]:
    """``n`` real photos drawn uniformly (seeded) from the ``split`` celebrities (split by clients).

    Returns:
      x float32 ``(n, 84, 84, 3)`` in [0, 1], y int32 ``(n,)`` (the attribute, 0/1).

    Raises:
      DataError: file missing or corrupt. ValueError: bad ``split``, ``n`` or attribute.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    check_attribute(attribute)
    arrays = load_packed(data_dir)
    train_ids, test_ids = client_split(arrays["celeb_id"])
    chosen = {int(c) for c in (train_ids if split == "train" else test_ids)}
    pool = np.flatnonzero(np.isin(arrays["celeb_id"], list(chosen)))
    if not 1 <= n <= len(pool):
        raise ValueError(f"n must be in [1, {len(pool)}], got {n}")
    idx = np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))
    names = [tff_attribute_name(str(a)) for a in arrays["attribute_names"]]
    y = (arrays["attributes_pm1"][idx, names.index(attribute)] > 0).astype(np.int32)
    return decode(arrays, idx).astype(np.float32) / np.float32(255.0), y


def load_celeba(data_dir: str, cache_root: Optional[str] = None, attribute: str = "male",
                max_clients: Optional[int] = None) -> FederatedData:
    """Loads CelebA split by clients with TFF's ``celeba.load_data`` from the offline cache.

    Args:
      data_dir: folder with ``celeba_wild_crops84_276ids.npz``.
      cache_root: where the SQLite cache is built (default ``$TFF_PRUNE_CACHE_DIR`` or ~/.cache/tff_prune).
      attribute: the binary label (TFF's name, e.g. ``male``, ``smiling``).
      max_clients: keep only the first N training celebrities (sorted by id); the test
        celebrities are always all used.

    Raises:
      DataError: the packed file is missing or corrupt. ValueError: unknown attribute.
    """
    import tensorflow_federated as tff  # imported here: the pruning engine must not need TFF

    check_attribute(attribute)
    cache_dir = build_sqlite_cache(data_dir, cache_root)
    train, test = tff.simulation.datasets.celeba.load_data(split_by_clients=True, cache_dir=cache_dir)
    ids = sorted(train.client_ids, key=int)
    if max_clients is not None:
        ids = ids[:max_clients]
    return FederatedData(train=train, test=test, client_ids=ids,
                         preprocess_fn=functools.partial(preprocess, attribute=attribute),
                         test_client_ids=sorted(test.client_ids, key=int), name="celeba")
