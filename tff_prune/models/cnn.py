"""The paper's FEMNIST CNN (Nguyen, Le, Avila 2024, arXiv 2411.01759, Sec. IV-A).

Conv2D(32,5,valid)-ReLU-MaxPool(2)-Conv2D(64,5,valid)-ReLU-MaxPool(2)-GAP-Dense(62, softmax):
56,126 parameters and 7,529,588 FLOPs per example (TF-profiler convention).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

FEMNIST_CNN_WIDTHS = (32, 64)


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
    widths = [int(w) for w in widths]
    if len(widths) != 2 or min(widths) < 1:
        raise ValueError(f"femnist_cnn needs two positive conv widths, got {widths}")
    L = tf.keras.layers

    def init(i):
        return tf.keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)

    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = L.Conv2D(widths[0], 5, padding="valid", kernel_initializer=init(0), name="conv1")(inputs)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPool2D(2, name="pool1")(x)
    x = L.Conv2D(widths[1], 5, padding="valid", kernel_initializer=init(1), name="conv2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.MaxPool2D(2, name="pool2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer=init(2), name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name="femnist_cnn")
