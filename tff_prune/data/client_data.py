"""What every data set here shares: the FederatedData handle, errors, and the offline SQLite cache.

TFF 0.87's loaders (``emnist.load_data``, ``celeba.load_data``) read ``<cache_dir>/<name>.sqlite``
without network access when that file exists (``SqlClientData`` layout: tables
``examples(split_name, client_id, serialized_example_proto)`` and
``client_metadata(client_id, split_name, num_examples)``). :func:`write_sqlite` builds such a
file atomically (temporary file in the same folder + ``os.replace``), so an interrupted build
leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sqlite3
import tempfile
import zipfile
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tff_prune.data.catalog import DATA_DIR_ENV

CACHE_DIR_ENV = "TFF_PRUNE_CACHE_DIR"


class DataError(RuntimeError):
    """A data file is missing or corrupt. The message says where we looked and the fix."""


def fix_hint(filename: str, data_dir: str) -> str:
    """How to point the project at a packed data file (the sentence every data error ends with)."""
    return (f"Put {filename} in {data_dir}, or pass --data-dir DIR (or set {DATA_DIR_ENV}=DIR) "
            f"to the folder that holds it (the project expects ../shared/data beside the checkout).")


def packed_file(data_dir: str, filename: str, what: str) -> str:
    """Path of packed data file ``filename`` in ``data_dir``; raises DataError naming ``what`` if absent."""
    path = os.path.join(data_dir, filename)
    if not os.path.isfile(path):
        raise DataError(f"{what} data not found: looked for {path}. {fix_hint(filename, data_dir)}")
    return path


def read_npz(path: str, keys: Sequence[str], what: str, data_dir: str) -> dict[str, np.ndarray]:
    """Reads ``keys`` from a ``.npz`` (no pickles).

    Raises:
      DataError: not a valid ``.npz`` or keys missing; the message names the file and the fix.
    """
    hint = fix_hint(os.path.basename(path), data_dir)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{what} data file {path} is corrupt: missing arrays {missing}. "
                                f"Replace it with a good copy. {hint}")
            return {k: z[k] for k in keys}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{what} data file {path} is corrupt or unreadable ({type(e).__name__}: {e}). "
                        f"Replace it with a good copy. {hint}") from e


def default_cache_root() -> str:
    """Root folder for built SQLite caches: ``$TFF_PRUNE_CACHE_DIR`` or ``~/.cache/tff_prune``."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tff_prune")


def file_digest(path: str) -> str:
    """First 16 hex digits of the SHA-256 of a file (names a cache built from it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def write_sqlite(db_path: str, splits: Iterable[tuple[str, str, Sequence[bytes]]]) -> None:
    """Writes a TFF ``SqlClientData`` file atomically.

    Args:
      db_path: final path (its folder must exist).
      splits: ``(split_name, client_id, serialized tf.train.Example protos)`` triples.
    """
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(db_path) + ".", suffix=".tmp",
                               dir=os.path.dirname(db_path))
    os.close(fd)
    try:
        con = sqlite3.connect(tmp)
        con.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
                    "serialized_example_proto BLOB NOT NULL)")
        con.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
                    "num_examples INTEGER NOT NULL)")
        for split, cid, protos in splits:
            protos = list(protos)
            con.executemany("INSERT INTO examples VALUES (?, ?, ?)", ((split, cid, p) for p in protos))
            con.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (cid, split, len(protos)))
        con.execute("CREATE INDEX examples_client_split ON examples (client_id, split_name)")
        con.commit()
        con.close()
        os.replace(tmp, db_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_problem(db_path: str) -> Optional[str]:
    """What is wrong with a cache file that should be a TFF ``SqlClientData`` database (None: looks sound).

    Checks, without reading the examples: the 16-byte SQLite header, that the file size is the header's
    page size x page count (a truncated or padded copy fails), that both tables exist and that
    ``client_metadata`` has rows.

    Returns:
      a short description of the first problem found, or None.
    """
    try:
        size = os.path.getsize(db_path)
        with open(db_path, "rb") as f:
            header = f.read(100)
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if size == 0:
        return "empty (0 bytes)"
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return "not an SQLite database (bad header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and size != page_size * pages:
        return f"truncated or padded ({size} bytes, the header says {pages} pages of {page_size})"
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = {"examples", "client_metadata"} - tables
            if missing:
                return f"missing tables {sorted(missing)}"
            if not con.execute("SELECT count(*) FROM client_metadata").fetchone()[0]:
                return "no clients in client_metadata"
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return f"corrupt ({e})"
    return None


def ensure_sqlite(db_path: str, build: Callable[[], None], what: str) -> None:
    """Builds the cache file ``db_path`` with ``build()`` unless a sound one (:func:`sqlite_problem`) is there.

    A damaged file (zero bytes, truncated, not SQLite) is logged and rebuilt from the packed data.

    Raises:
      DataError: the file is still unsound after the rebuild; names the file and the fix.
    """
    if os.path.isfile(db_path):
        problem = sqlite_problem(db_path)
        if problem is None:
            return
        logging.getLogger(__name__).warning("%s cache %s is %s; rebuilding it from the packed data",
                                            what, db_path, problem)
        os.remove(db_path)
    build()
    problem = sqlite_problem(db_path)
    if problem is not None:
        raise DataError(f"{what} cache {db_path} is {problem} right after it was built; check the disk "
                        f"(space, errors) or set {CACHE_DIR_ENV} to another folder")


@dataclasses.dataclass
class FederatedData:
    """Client-partitioned data as TFF ``ClientData`` plus a central test set.

    Attributes:
      train: TFF ``ClientData`` of training examples (elements as TFF's loader gives them).
      test: TFF ``ClientData`` of test examples.
      client_ids: sorted training client ids in use (after ``max_clients``).
      preprocess_fn: maps one TFF element to ``(x float32, y int32 scalar)``.
      test_client_ids: clients whose test examples form the test set (default: ``client_ids``;
        CelebA split by clients has its own test celebrities).
      name: data set name (``femnist``, ``celeba``).
    """

    train: object
    test: object
    client_ids: list[str]
    preprocess_fn: Callable
    test_client_ids: Optional[list[str]] = None
    name: str = ""

    def client_dataset(self, client_id: str, local_epochs: int, batch_size: int, seed: int) -> tf.data.Dataset:
        """Training ``tf.data`` for one client: cache -> shuffle(seeded) -> repeat(local_epochs) -> batch.

        Elements are ``(x, y)``: x float32 ``(batch, H, W, C)``, y int32 ``(batch,)``. The client's examples are
        read and decoded once per round and cached in memory (a client holds at most a few MB), not once per
        local epoch; the order is the same as without the cache.
        """
        ds = self.train.create_tf_dataset_for_client(client_id).map(self.preprocess_fn).cache()
        return ds.shuffle(512, seed=seed, reshuffle_each_iteration=True).repeat(local_epochs).batch(batch_size)

    def num_examples(self, client_id: str) -> int:
        """Number of training examples of one client."""
        return int(self.train.create_tf_dataset_for_client(client_id).reduce(0, lambda n, _: n + 1))

    def train_arrays(self, client_ids: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Union of the training examples of ``client_ids`` (default: ``client_ids`` in use) as numpy.

        For centralized training on pooled client data (``tff_prune.centralized``), the reference a
        federated result is compared with. Clients in the given order, each client's examples in stored order.

        Returns:
          x float32 ``(M, H, W, C)`` and y int32 ``(M,)``.
        """
        return self._pooled(self.train, self.client_ids if client_ids is None else list(client_ids))

    def test_arrays(self, client_ids: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Union of the test examples of ``client_ids`` (default: the test clients) as numpy.

        Returns:
          x float32 ``(M, H, W, C)`` and y int32 ``(M,)``.
        """
        if client_ids is not None:
            ids = list(client_ids)
        else:
            ids = self.test_client_ids if self.test_client_ids is not None else self.client_ids
        return self._pooled(self.test, ids)

    def _pooled(self, client_data, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ds = tf.data.Dataset.from_tensor_slices(ids).flat_map(client_data.serializable_dataset_fn)
        ds = ds.map(self.preprocess_fn).batch(1024)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        return np.concatenate(xs), np.concatenate(ys)
