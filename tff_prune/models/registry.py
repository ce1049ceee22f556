"""Model registry: ``get_model(name, dataset)`` builds an architecture by name."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tff_prune.models import cnn

MODEL_NAMES = ("cnn",)
_INPUT_SHAPES = {"femnist": (28, 28, 1)}
_NUM_CLASSES = {"femnist": 62}


def input_shape(dataset: str) -> tuple[int, int, int]:
    """Per-example input shape (H, W, C) of ``dataset``; raises ValueError if unknown."""
    try:
        return _INPUT_SHAPES[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(_INPUT_SHAPES)}") from None


def num_classes(dataset: str) -> int:
    """Number of classes of ``dataset`` (FEMNIST: 62); raises ValueError if unknown."""
    input_shape(dataset)
    return _NUM_CLASSES[dataset]


def get_model(name: str, dataset: str, widths: Sequence[int] | None = None,
              seed: int | None = None) -> tf.keras.Model:
    """Builds model ``name`` for ``dataset``, optionally with pruned conv ``widths``.

    Raises:
      ValueError: unknown model or dataset name.
    """
    shape = input_shape(dataset)
    if name == "cnn" and dataset == "femnist":
        return cnn.femnist_cnn(widths or cnn.FEMNIST_CNN_WIDTHS, num_classes(dataset), shape, seed=seed)
    raise ValueError(f"unknown model {name!r} for dataset {dataset!r}; known: {list(MODEL_NAMES)}")
