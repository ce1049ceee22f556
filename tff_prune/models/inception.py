"""The paper's naive Inception network (authors' public code, ``define_inception_model``).

Stem Conv2D(32,3,s2,valid,relu); two naive Inception modules of parallel 1x1, 3x3 and 5x5
convs (same padding, relu) concatenated on channels, with 16 then 32 filters per branch;
Conv2D(96,3,s2,valid,relu) twice; GlobalAveragePooling; Dense(50, relu); Dense(classes, softmax).
Parameters: 243,752 on CelebA (84x84x3, 2 classes), 246,236 on FEMNIST (28x28x1, 62 classes).

For the pruning engine each branch is its own group: its filters couple to one slice of the
Concatenate output and to the matching input channels of every conv of the next stage.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tff_prune.models.initializers import glorot_sequence

INCEPTION_WIDTHS = (32, 16, 16, 16, 32, 32, 32, 96, 96)


def inception(widths: Sequence[int] = INCEPTION_WIDTHS, num_classes: int = 2, input_shape=(84, 84, 3),
              seed: int | None = None) -> tf.keras.Model:
    """Builds the naive Inception network.

    Args:
      widths: 9 filter counts in the authors' order: stem, module 1 (1x1, 3x3, 5x5),
        module 2 (1x1, 3x3, 5x5), conv6, conv7.
      num_classes: classifier outputs.
      input_shape: per-example input shape, float32 in [0, 1].
      seed: initialiser seed (layer i gets ``seed + i``; None: global RNG).

    Returns:
      A functional ``tf.keras.Model`` ``(batch, *input_shape)`` -> ``(batch, num_classes)`` probabilities.

    Raises:
      ValueError: ``widths`` is not 9 positive integers.
    """
    widths = [int(w) for w in widths]
    if len(widths) != 9 or min(widths) < 1:
        raise ValueError(f"inception needs 9 positive widths (stem, 2 x [1x1, 3x3, 5x5], conv6, conv7), got {widths}")
    L = tf.keras.layers
    init = glorot_sequence(seed)

    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = L.Conv2D(widths[0], 3, strides=2, activation="relu", kernel_initializer=init(), name="stem_conv")(inputs)
    for m in (1, 2):
        f1, f3, f5 = widths[1 + 3 * (m - 1): 4 + 3 * (m - 1)]
        b1 = L.Conv2D(f1, 1, padding="same", activation="relu", kernel_initializer=init(), name=f"mixed{m}_1x1")(x)
        b3 = L.Conv2D(f3, 3, padding="same", activation="relu", kernel_initializer=init(), name=f"mixed{m}_3x3")(x)
        b5 = L.Conv2D(f5, 5, padding="same", activation="relu", kernel_initializer=init(), name=f"mixed{m}_5x5")(x)
        x = L.Concatenate(axis=-1, name=f"mixed{m}")([b1, b3, b5])
    x = L.Conv2D(widths[7], 3, strides=2, activation="relu", kernel_initializer=init(), name="conv6")(x)
    x = L.Conv2D(widths[8], 3, strides=2, activation="relu", kernel_initializer=init(), name="conv7")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(50, activation="relu", kernel_initializer=init(), name="fc")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer=init(), name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name="inception")
