"""Shared fixtures: real FEMNIST from ../shared/data (or $TFF_PRUNE_DATA_DIR)."""

import os

import numpy as np
import pytest

from tff_prune.config import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir():
    d = resolve_data_dir(None)
    if not os.path.isfile(os.path.join(d, "femnist_leaf_300w.npz")):
        pytest.fail(f"real FEMNIST data not found in {d}; put ../shared/data beside the checkout "
                    f"or set TFF_PRUNE_DATA_DIR")
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
    from tff_prune.federated.process import stop_worker_processes

    stop_worker_processes()


def cnn_param_count(a: int, b: int, classes: int = 62) -> int:
    """Parameters of the FEMNIST CNN with conv widths (a, b): 5x5 kernels, biases, GAP, Dense."""
    return (25 * 1 * a + a) + (25 * a * b + b) + (b * classes + classes)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
