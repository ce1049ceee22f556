"""The paper's plain CNNs (Nguyen, Le, Avila 2024, arXiv 2411.01759, Sec. IV-A; authors' public code).

FEMNIST: Conv2D(32,5,valid)-ReLU-MaxPool(2)-Conv2D(64,5,valid)-ReLU-MaxPool(2)-GAP-Dense(62, softmax):
56,126 parameters and 7,529,588 FLOPs per example (TF-profiler convention).
CelebA: 4 x [Conv2D(32,5,same)-ReLU-MaxPool(2)]-Flatten-Dense(2, softmax) on 84x84x3: 80,930 parameters.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

FEMNIST_CNN_WIDTHS = (32, 64)
CELEBA_CNN_WIDTHS = (32, 32, 32, 32)


def _init(seed: int | None, i: int):
    return tf.keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)


def _check_widths(widths: Sequence[int], n: int, what: str) -> list[int]:
    widths = [int(w) for w in widths]
    if len(widths) != n or min(widths) < 1:
        raise ValueError(f"{what} needs {n} positive conv widths, got {widths}")
    return widths


def femnist_cnn(widths: Sequence[int] = FEMNIST_CNN_WIDTHS, num_classes: int = 62,
                input_shape=(28, 28, 1), seed: int | None = None) -> tf.keras.Model:
    """Builds the paper's FEMNIST CNN, optionally with fewer filters per conv.

    Args:
      widths: filters of ``conv1`` and ``conv2`` (the prunable layers).
      num_classes: classifier outputs (62 for FEMNIST).
      input_shape: per-example input shape, float32 in [0, 1].
      seed: seed for the Glorot-uniform kernel initialisers (None: global RNG).

    Returns:
      A functional ``tf.keras.Model`` mapping ``(batch, 28, 28, 1)`` float32 to
      ``(batch, num_classes)`` class probabilities.

    Raises:
      ValueError: if ``widths`` does not have two positive entries.
    """
    widths = _check_widths(widths, 2, "femnist_cnn")
    L = tf.keras.layers
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = L.Conv2D(widths[0], 5, padding="valid", kernel_initializer=_init(seed, 0), name="conv1")(inputs)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPool2D(2, name="pool1")(x)
    x = L.Conv2D(widths[1], 5, padding="valid", kernel_initializer=_init(seed, 1), name="conv2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.MaxPool2D(2, name="pool2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer=_init(seed, 2), name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name="femnist_cnn")


def celeba_cnn(widths: Sequence[int] = CELEBA_CNN_WIDTHS, num_classes: int = 2,
               input_shape=(84, 84, 3), seed: int | None = None) -> tf.keras.Model:
    """Builds the paper's CelebA CNN: 4 x [Conv2D(w,5,same)-ReLU-MaxPool(2)]-Flatten-Dense.

    Args:
      widths: filters of ``conv1``..``conv4`` (authors: 32 each).
      num_classes: classifier outputs (2 for a binary attribute).
      input_shape: per-example input shape, float32 RGB in [0, 1].
      seed: initialiser seed (None: global RNG).

    Returns:
      A functional model ``(batch, 84, 84, 3)`` float32 -> ``(batch, num_classes)`` probabilities
      (80,930 parameters at the default widths).

    Raises:
      ValueError: if ``widths`` does not have four positive entries.
    """
    widths = _check_widths(widths, 4, "celeba_cnn")
    L = tf.keras.layers
    x = inputs = tf.keras.Input(shape=input_shape, name="image")
    for i, w in enumerate(widths, start=1):
        x = L.Conv2D(w, 5, padding="same", kernel_initializer=_init(seed, i - 1), name=f"conv{i}")(x)
        x = L.Activation("relu", name=f"relu{i}")(x)
        x = L.MaxPool2D(2, name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer=_init(seed, 4), name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name="celeba_cnn")
