"""The paper's ResNet-7 (authors' public code, ``Define_ResNet_Model`` with filters [16, 32, 64]).

Stem: Conv2D(16,3,s2,same)-BN-ReLU-MaxPool(2,same). Then two residual blocks; block ``i`` with
width ``w_i``: Conv2D(w_i,3,s2,same)-BN-ReLU-Conv2D(C,3,same)-BN, shortcut Conv2D(C,1,s2,same)-BN,
Add, ReLU, where ``C`` is the block's input width (the stem width): the residual stream keeps the
stem's channels. Flatten, Dense(classes, softmax). Parameters: 30,626 on CelebA (84x84x3, 2 classes),
33,214 on FEMNIST (28x28x1, 62 classes).

For the pruning engine the stem conv, both blocks' second convs, both shortcuts, their BatchNorms,
the Adds and the Flatten rows form one dependency group (the residual stream).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tff_prune.models.initializers import glorot_sequence

RESNET_WIDTHS = (16, 32, 64)


def resnet7(widths: Sequence[int] = RESNET_WIDTHS, num_classes: int = 2, input_shape=(84, 84, 3),
            seed: int | None = None) -> tf.keras.Model:
    """Builds ResNet-7.

    Args:
      widths: ``(stem, block1, block2)`` filters; the blocks' second convs and shortcuts use the stem width.
      num_classes: classifier outputs.
      input_shape: per-example input shape, float32 in [0, 1].
      seed: initialiser seed (layer i gets ``seed + i``; None: global RNG).

    Returns:
      A functional ``tf.keras.Model`` ``(batch, *input_shape)`` -> ``(batch, num_classes)`` probabilities.

    Raises:
      ValueError: ``widths`` is not three positive integers.
    """
    widths = [int(w) for w in widths]
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"resnet7 needs three positive widths (stem, block1, block2), got {widths}")
    L = tf.keras.layers
    init = glorot_sequence(seed)

    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = L.Conv2D(widths[0], 3, strides=2, padding="same", kernel_initializer=init(), name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    x = L.MaxPool2D(2, padding="same", name="stem_pool")(x)
    for b, width in enumerate(widths[1:], start=1):
        stream = x.shape[-1]
        y = L.Conv2D(width, 3, strides=2, padding="same", kernel_initializer=init(), name=f"block{b}_conv1")(x)
        y = L.BatchNormalization(name=f"block{b}_bn1")(y)
        y = L.Activation("relu", name=f"block{b}_relu1")(y)
        y = L.Conv2D(stream, 3, padding="same", kernel_initializer=init(), name=f"block{b}_conv2")(y)
        y = L.BatchNormalization(name=f"block{b}_bn2")(y)
        s = L.Conv2D(stream, 1, strides=2, padding="same", kernel_initializer=init(), name=f"block{b}_shortcut")(x)
        s = L.BatchNormalization(name=f"block{b}_shortcut_bn")(s)
        x = L.Add(name=f"block{b}_add")([y, s])
        x = L.Activation("relu", name=f"block{b}_out")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer=init(), name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name="resnet7")
