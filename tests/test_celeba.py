"""CelebA through TFF's loader: offline SQLite cache from the packed real photos, clients = celebrities."""

import os

import numpy as np
import pytest

from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.data import DataError, celeba as cb


@pytest.fixture(scope="module")
def small_packed(tmp_path_factory, data_dir):
    """A packed file with the real photos of 12 celebrities (same format as the shared file)."""
    z = dict(np.load(os.path.join(data_dir, cb.PACKED_FILE)))
    keep_ids = np.unique(z["celeb_id"])[:12]
    idx = np.flatnonzero(np.isin(z["celeb_id"], keep_ids))
    off = z["jpeg_offsets"]
    chunks = [z["jpeg_bytes"][off[i]:off[i + 1]] for i in idx]
    out = {"jpeg_bytes": np.concatenate(chunks), "jpeg_offsets": np.r_[0, np.cumsum([len(c) for c in chunks])],
           "image_names": z["image_names"][idx], "celeb_id": z["celeb_id"][idx],
           "attributes_pm1": z["attributes_pm1"][idx], "attribute_names": z["attribute_names"]}
    d = tmp_path_factory.mktemp("celeba_packed")
    np.savez(d / cb.PACKED_FILE, **out)
    return str(d), out


def test_cache_is_read_by_tffs_loader_with_the_right_labels(small_packed, tmp_path):
    data_dir, packed = small_packed
    cache = cb.build_sqlite_cache(data_dir, cache_root=str(tmp_path))
    assert os.listdir(cache) == [cb.SQLITE_FILE]  # no temporary file left behind
    data = cb.load_celeba(data_dir, cache_root=str(tmp_path), attribute="smiling")
    train_ids, test_ids = cb.client_split(packed["celeb_id"])
    assert data.client_ids == train_ids and data.test_client_ids == test_ids == sorted(test_ids, key=int)
    assert len(test_ids) == 1 and not set(train_ids) & set(test_ids)  # 10% of 12 celebrities, rounded
    cid = train_ids[2]
    rows = np.flatnonzero(packed["celeb_id"] == int(cid))
    names = [cb.tff_attribute_name(str(a)) for a in packed["attribute_names"]]
    want_y = (packed["attributes_pm1"][rows, names.index("smiling")] > 0).astype(np.int32)
    got = list(data.train.create_tf_dataset_for_client(cid).map(data.preprocess_fn))
    xs, ys = np.stack([g[0].numpy() for g in got]), np.array([int(g[1]) for g in got])
    np.testing.assert_array_equal(ys, want_y)
    np.testing.assert_array_equal(xs, cb.decode(packed, rows).astype(np.float32) / np.float32(255.0))
    assert xs.shape[1:] == (84, 84, 3) and xs.dtype == np.float32
    x, y = data.test_arrays()
    assert len(x) == int(np.isin(packed["celeb_id"], [int(t) for t in test_ids]).sum())


def test_attribute_names_follow_tff():
    assert cb.tff_attribute_name("5_o_Clock_Shadow") == "five_o_clock_shadow"
    assert cb.tff_attribute_name("Male") == "male"
    assert cb.attribute_names()[20] == "male" and len(cb.attribute_names()) == 40


def test_real_celeba_split_and_labels(celeba, data_dir):
    assert len(celeba.client_ids) == 8 and len(celeba.test_client_ids) == 28  # 276 celebrities, 10% test
    x, y = celeba.test_arrays()
    assert x.shape[1:] == (84, 84, 3) and set(np.unique(y)) == {0, 1}
    batch_x, batch_y = next(iter(celeba.client_dataset(celeba.client_ids[0], 1, 32, seed=0)))
    assert batch_x.shape[1:] == (84, 84, 3) and batch_y.dtype.name == "int32"
    sx, sy = cb.sample_images(data_dir, "test", 40, seed=1)
    assert sx.shape == (40, 84, 84, 3) and 0 <= sx.min() and sx.max() <= 1 and set(np.unique(sy)) <= {0, 1}


def test_errors_name_the_problem_and_the_fix(tmp_path, data_dir):
    with pytest.raises(DataError) as e:
        cb.load_celeba(str(tmp_path))
    assert str(tmp_path / cb.PACKED_FILE) in str(e.value) and "--data-dir" in str(e.value)
    (tmp_path / cb.PACKED_FILE).write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt"):
        cb.build_sqlite_cache(str(tmp_path), cache_root=str(tmp_path / "cache"))
    assert not any((tmp_path / "cache").rglob("*.sqlite"))
    with pytest.raises(ValueError, match="unknown CelebA attribute 'gender'.*male"):
        cb.load_celeba(data_dir, attribute="gender")
    with pytest.raises(ConfigError, match="--celeba-attribute"):
        ExperimentConfig(dataset="celeba", celeba_attribute="Male")
    with pytest.raises(ConfigError, match="--femnist-crop"):
        ExperimentConfig(dataset="celeba", femnist_crop=True)


def test_corrupt_jpeg_is_reported(small_packed, tmp_path):
    _, packed = small_packed
    bad = dict(packed)
    raw = packed["jpeg_bytes"].copy()
    raw[packed["jpeg_offsets"][0]:packed["jpeg_offsets"][1]] = 0
    bad["jpeg_bytes"] = raw
    with pytest.raises(DataError, match="image 0 is not a valid JPEG"):
        cb.decode(bad, np.array([0]))
