"""Keras architectures of the paper, built by :func:`get_model`."""

from tff_prune.models.registry import get_model, input_shape, num_classes, MODEL_NAMES

__all__ = ["get_model", "input_shape", "num_classes", "MODEL_NAMES"]
