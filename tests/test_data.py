"""FEMNIST through TFF's loader: offline SQLite cache built from the packed real data."""

import os

import numpy as np
import pytest

from tff_prune.data import DataError, load_femnist
from tff_prune.data import femnist as fm


@pytest.fixture(scope="module")
def small_packed(tmp_path_factory, data_dir):
    """A packed file with the first 3 real writers (same format as the shared file)."""
    z = dict(np.load(os.path.join(data_dir, fm.PACKED_FILE)))
    n = 3
    out = {"client_ids": z["client_ids"][:n]}
    for split in ("train", "test"):
        off = z[f"{split}_offsets"]
        out[f"{split}_pixels_u8"] = z[f"{split}_pixels_u8"][: off[n]]
        out[f"{split}_labels"] = z[f"{split}_labels"][: off[n]]
        out[f"{split}_offsets"] = off[: n + 1]
    d = tmp_path_factory.mktemp("packed")
    np.savez(d / fm.PACKED_FILE, **out)
    return str(d), out


def test_cache_is_built_once_atomically_and_read_by_tff(small_packed, tmp_path):
    data_dir, packed = small_packed
    cache = fm.build_sqlite_cache(data_dir, cache_root=str(tmp_path))
    db = os.path.join(cache, fm.SQLITE_FILE)
    assert os.listdir(cache) == [fm.SQLITE_FILE]  # no temporary file left behind
    mtime = os.stat(db).st_mtime_ns
    assert fm.build_sqlite_cache(data_dir, cache_root=str(tmp_path)) == cache
    assert os.stat(db).st_mtime_ns == mtime  # reused, not rebuilt

    data = load_femnist(data_dir, cache_root=str(tmp_path))
    ids = [str(c) for c in packed["client_ids"]]
    assert data.client_ids == sorted(ids)
    cid = ids[1]
    off = packed["train_offsets"]
    want_x = packed["train_pixels_u8"][off[1]:off[2]].astype(np.float32) / 255.0
    want_y = packed["train_labels"][off[1]:off[2]]
    got = [(e["pixels"].numpy(), int(e["label"].numpy())) for e in data.train.create_tf_dataset_for_client(cid)]
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), want_x)
    assert [g[1] for g in got] == want_y.tolist()
    x, y = data.test_arrays()
    assert x.shape == (len(packed["test_labels"]), 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32


def test_client_dataset_is_shuffled_repeated_and_batched(femnist):
    cid = femnist.client_ids[0]
    n = femnist.num_examples(cid)
    ds = femnist.client_dataset(cid, local_epochs=3, batch_size=32, seed=7)
    batches = list(ds)
    assert sum(len(b[1]) for b in batches) == 3 * n
    assert all(len(b[1]) == 32 for b in batches[:-1])
    x, y = batches[0]
    assert x.shape[1:] == (28, 28, 1) and x.dtype.name == "float32" and y.dtype.name == "int32"
    again = list(femnist.client_dataset(cid, 3, 32, seed=7))
    np.testing.assert_array_equal(batches[0][1].numpy(), again[0][1].numpy())  # seeded
    other = list(femnist.client_dataset(cid, 3, 32, seed=8))
    assert not np.array_equal(batches[0][1].numpy(), other[0][1].numpy())


def test_client_cache_keeps_the_uncached_order_exactly(femnist):
    # The cache only saves re-reading and re-decoding each local epoch: same batches, same order.
    cid = femnist.client_ids[1]
    cached = list(femnist.client_dataset(cid, 3, 32, seed=11))
    plain = (femnist.train.create_tf_dataset_for_client(cid).map(femnist.preprocess_fn)
             .shuffle(512, seed=11, reshuffle_each_iteration=True).repeat(3).batch(32))
    plain = list(plain)
    assert len(cached) == len(plain)
    for (xc, yc), (xp, yp) in zip(cached, plain):
        np.testing.assert_array_equal(xc.numpy(), xp.numpy())
        np.testing.assert_array_equal(yc.numpy(), yp.numpy())


def test_authors_crop(femnist):
    import functools

    plain = fm.FederatedData(femnist.train, femnist.test, femnist.client_ids, fm.preprocess)
    cropped = fm.FederatedData(femnist.train, femnist.test, femnist.client_ids,
                               functools.partial(fm.preprocess, crop=True))
    (xp, yp), (xc, yc) = plain.test_arrays(femnist.client_ids[:1]), cropped.test_arrays(femnist.client_ids[:1])
    assert xc.shape == xp.shape and np.array_equal(yp, yc)
    assert not np.allclose(xp, xc)
    import tensorflow as tf

    want = tf.image.resize(xp[:, 5:20, 5:20, :], (28, 28), method="bilinear").numpy()
    np.testing.assert_allclose(xc, want, atol=1e-6)


def test_missing_file_says_where_it_looked_and_how_to_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_femnist(str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / fm.PACKED_FILE) in msg and "--data-dir" in msg and "TFF_PRUNE_DATA_DIR" in msg


def test_corrupt_file_is_reported(tmp_path):
    (tmp_path / fm.PACKED_FILE).write_bytes(b"this is not an npz file")
    with pytest.raises(DataError, match="corrupt"):
        fm.build_sqlite_cache(str(tmp_path), cache_root=str(tmp_path / "cache"))
    assert not any((tmp_path / "cache").rglob("*.sqlite"))


def test_missing_arrays_are_reported(tmp_path):
    np.savez(tmp_path / fm.PACKED_FILE, client_ids=np.array(["a"]))
    with pytest.raises(DataError, match="missing arrays"):
        fm.load_packed(str(tmp_path))
