"""Shared fixtures: real FEMNIST from ../shared/data (or $TFF_PRUNE_DATA_DIR)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tff_prune.data.catalog import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir():
    d = resolve_data_dir(None)
    if not os.path.isfile(os.path.join(d, "femnist_leaf_300w.npz")):
        pytest.skip(f"real FEMNIST data not found in {d}: put ../shared/data beside the checkout "
                    f"or set TFF_PRUNE_DATA_DIR (tests that need no data still run)")
    return d


@pytest.fixture(scope="session")
def femnist(data_dir):
    """FederatedData with the first 20 real writers (TFF loader over the offline SQLite cache)."""
    from tff_prune.data import load_femnist

    return load_femnist(data_dir, max_clients=20)


@pytest.fixture(scope="session")
def real_images(femnist):
    """(256, 28, 28, 1) float32 real FEMNIST test images."""
    x, _ = femnist.test_arrays()
    return x[:256]


@pytest.fixture(scope="session", autouse=True)
def _end_tff_workers():
    yield
    import sys

    if "tensorflow_federated" in sys.modules:  # pruning and mobile tests never import TFF
        from tff_prune.federated.process import stop_worker_processes

        stop_worker_processes()


def cnn_param_count(a: int, b: int, classes: int = 62) -> int:
    """Parameters of the FEMNIST CNN with conv widths (a, b): 5x5 kernels, biases, GAP, Dense."""
    return (25 * 1 * a + a) + (25 * a * b + b) + (b * classes + classes)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def celeba_images(data_dir):
    """(64, 84, 84, 3) float32 real CelebA test-celebrity photos (decoded from the packed file, no cache)."""
    from tff_prune.data.celeba import sample_images

    x, _ = sample_images(data_dir, "test", 64, seed=0)
    return x


@pytest.fixture(scope="session")
def celeba(data_dir):
    """FederatedData: 8 real training celebrities, all 28 test celebrities (TFF loader, offline cache)."""
    from tff_prune.data.celeba import load_celeba

    return load_celeba(data_dir, max_clients=8)


def profiler_flops(model: tf.keras.Model) -> int:
    """FLOPs of the frozen batch-1 inference graph, as tf.compat.v1.profiler counts them."""
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32))
    graph = convert_variables_to_constants_v2(fn).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)
