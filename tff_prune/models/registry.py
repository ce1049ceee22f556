"""Model registry: ``get_model(name, dataset)`` builds the paper's architectures by name."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tff_prune.data.catalog import DATASETS
from tff_prune.models import cnn, inception, mobile, resnet

MODEL_NAMES = ("cnn", "resnet", "inception", "mobilenetv2", "mobilenetv3small", "mobilenetv2_gn",
               "mobilenetv3small_gn")
_INPUT_SHAPES = {"femnist": (28, 28, 1), "celeba": (84, 84, 3)}
_NUM_CLASSES = {"femnist": 62, "celeba": 2}


def input_shape(dataset: str) -> tuple[int, int, int]:
    """Per-example input shape (H, W, C) of ``dataset``; raises ValueError if unknown."""
    try:
        return _INPUT_SHAPES[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(_INPUT_SHAPES)}") from None


def num_classes(dataset: str) -> int:
    """Number of classes of ``dataset`` (FEMNIST: 62; CelebA: 2, one binary attribute); ValueError if unknown."""
    input_shape(dataset)
    return _NUM_CLASSES[dataset]


def get_model(name: str, dataset: str, widths: Sequence[int] | None = None,
              seed: int | None = None) -> tf.keras.Model:
    """Builds model ``name`` (one of :data:`MODEL_NAMES`) for ``dataset``.

    ``dataset`` is ``femnist`` or ``celeba``. The paper's three architectures are in
    :mod:`tff_prune.models.cnn`, ``resnet``, ``inception``; the two Keras applications (weights=None)
    in :mod:`tff_prune.models.mobile`; a ``_gn`` suffix replaces their BatchNormalization with
    GroupNormalization (:func:`tff_prune.models.mobile.with_group_norm`).

    Args:
      widths: conv widths in the authors' order (see each builder); None: the paper's. Not
        accepted by the Keras applications (prune them instead).
      seed: initialiser seed (None: global RNG).

    Raises:
      ValueError: unknown model or dataset name, bad widths.
    """
    shape, classes = input_shape(dataset), num_classes(dataset)
    if name == "cnn":
        if dataset == "femnist":
            return cnn.femnist_cnn(widths or cnn.FEMNIST_CNN_WIDTHS, classes, shape, seed=seed)
        return cnn.celeba_cnn(widths or cnn.CELEBA_CNN_WIDTHS, classes, shape, seed=seed)
    if name == "resnet":
        return resnet.resnet7(widths or resnet.RESNET_WIDTHS, classes, shape, seed=seed)
    if name == "inception":
        return inception.inception(widths or inception.INCEPTION_WIDTHS, classes, shape, seed=seed)
    if name in ("mobilenetv2", "mobilenetv3small", "mobilenetv2_gn", "mobilenetv3small_gn"):
        if widths is not None:
            raise ValueError(f"model {name!r} takes no widths (a Keras application; prune it instead)")
        build = mobile.mobilenetv2 if name.startswith("mobilenetv2") else mobile.mobilenetv3small
        model = build(classes, shape, seed=seed)
        return mobile.with_group_norm(model) if name.endswith("_gn") else model
    raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")
