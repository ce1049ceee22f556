"""Keras -> TFLite conversion with ``tf.lite.TFLiteConverter``.

Variants: ``float32`` (no optimisation). Quantised variants come with the mobile
pipeline (float16, dynamic-range and full-integer int8).
"""

from __future__ import annotations

import tensorflow as tf

from tff_prune.report import atomic_write_bytes

VARIANTS = ("float32",)


def convert(keras_model: tf.keras.Model, variant: str = "float32") -> bytes:
    """Converts ``keras_model`` to a TFLite flatbuffer.

    Args:
      keras_model: a built Keras model.
      variant: ``"float32"``.

    Returns:
      the ``.tflite`` model as bytes.

    Raises:
      ValueError: unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    return converter.convert()


def convert_to_file(keras_model: tf.keras.Model, path: str, variant: str = "float32") -> int:
    """Converts and writes the flatbuffer atomically to ``path``; returns its size in bytes."""
    data = convert(keras_model, variant)
    atomic_write_bytes(path, data)
    return len(data)
