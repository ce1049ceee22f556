"""Seeded kernel initializers shared by the model builders."""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf


def glorot_sequence(seed: Optional[int]) -> Callable[[], tf.keras.initializers.Initializer]:
    """Returns ``init()``; its i-th call gives ``GlorotUniform(seed + i)`` (unseeded if ``seed`` is None).

    Each layer of a seeded model thus gets its own reproducible seed, in build order.
    """
    counter = iter(range(1 << 30))

    def init():
        return tf.keras.initializers.GlorotUniform(seed=None if seed is None else seed + next(counter))

    return init
