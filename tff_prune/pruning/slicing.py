"""Per-layer weight slicing and zeroing for removed channels (used by plans and surgery).

A layer sees removed channels through two bool keep-masks over the last axis: of its
input tensor (``in_keep``) and of its output tensor (``out_keep``). Weight layouts are
Keras' (``tf.keras.layers`` docs): Conv2D kernel ``(kh, kw, c_in, c_out)``, Dense kernel
``(c_in, c_out)``, SeparableConv2D depthwise ``(kh, kw, c_in, m)`` and pointwise
``(1, 1, c_in*m, c_out)``, DepthwiseConv2D kernel ``(kh, kw, c_in, m)`` with bias
``(c_in*m,)`` (output channel ``c*m + j`` comes from input channel ``c``),
BatchNormalization and GroupNormalization vectors ``(c,)``, PReLU alpha ``input_shape[1:]``
(shared axes 1), grouped Conv2D kernel ``(kh, kw, c_in / groups, c_out)`` (input channel ``k * c_in/groups + j`` is row ``j``
of group ``k``).

Layer types of your own with per-channel weights: :func:`register_layer_slicer`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from typing import Callable

from tff_prune.pruning.graph import UnsupportedLayerError

L = tf.keras.layers
Slicer = Callable[[tf.keras.layers.Layer, np.ndarray, np.ndarray], list]
Zeroer = Callable[[tf.keras.layers.Layer, np.ndarray, np.ndarray], None]
SLICERS: dict[type, tuple[Slicer, Zeroer]] = {}


def register_layer_slicer(layer_type: type, slice_fn: Slicer, zero_fn: Zeroer) -> None:
    """Weight slicing for a layer type of your own (used with :func:`~tff_prune.pruning.register_layer_rule`).

    Args:
      layer_type: the exact layer class.
      slice_fn: ``slice_fn(layer, in_keep, out_keep) -> list of numpy arrays`` in ``get_weights()`` order,
        with the removed channels left out (``in_keep``/``out_keep``: bool masks over the last axis of
        the layer's input and output).
      zero_fn: ``zero_fn(layer, in_keep, out_keep) -> None``: zeroes in place the weights that make the
        removed output channels, so the masked model's output is 0 there (or does nothing, if the
        layer's rule says 0 in gives 0 out).
    """
    SLICERS[layer_type] = (slice_fn, zero_fn)


def _grouped_in_keep(layer, in_keep: np.ndarray) -> np.ndarray:
    """Keep-mask of the kernel's input axis of a Conv2D with ``groups`` (rows shared by every group)."""
    g = int(layer.groups)
    if g == 1:
        return in_keep
    per = in_keep.size // g
    if per == 1:  # depthwise-like: the kernel has one input row
        return np.ones(1, dtype=bool)
    rows = in_keep.reshape(g, per)
    if not (rows == rows[0]).all():
        raise UnsupportedLayerError(f"{layer.name!r}: removed input channels differ between its {g} groups")
    return rows[0]


def _var_name(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def slice_weights(layer: tf.keras.layers.Layer, in_keep: np.ndarray, out_keep: np.ndarray) -> list[np.ndarray]:
    """The layer's weights (``get_weights()`` order) restricted to the kept channels.

    Args:
      layer: a built Keras layer.
      in_keep: bool ``(c_in,)`` keep-mask of its input channels (all True if untouched).
      out_keep: bool ``(c_out,)`` keep-mask of its output channels.

    Returns:
      list of numpy arrays, the same dtypes, shapes reduced on the channel axes.

    Raises:
      UnsupportedLayerError: a layer with weights whose channels the engine cannot slice
        (it should have been a barrier).
    """
    w = layer.get_weights()
    if not w or (in_keep.all() and out_keep.all()):
        return w
    t = type(layer)
    if t in SLICERS:
        return SLICERS[t][0](layer, in_keep, out_keep)
    if t is L.Conv2D:
        kernel = np.compress(out_keep, np.compress(_grouped_in_keep(layer, in_keep), w[0], axis=-2), axis=-1)
        return [kernel] + [b[out_keep] for b in w[1:]]
    if t is L.Dense:
        kernel = np.compress(out_keep, np.compress(in_keep, w[0], axis=-2), axis=-1)
        return [kernel] + [b[out_keep] for b in w[1:]]
    if t is L.SeparableConv2D:
        m = layer.depth_multiplier
        depthwise = np.compress(in_keep, w[0], axis=2)
        pointwise = np.compress(out_keep, np.compress(np.repeat(in_keep, m), w[1], axis=2), axis=3)
        return [depthwise, pointwise] + [b[out_keep] for b in w[2:]]
    if t is L.DepthwiseConv2D:
        return [np.compress(in_keep, w[0], axis=2)] + [b[out_keep] for b in w[1:]]
    if t is L.BatchNormalization:
        return [v[in_keep] for v in w]
    if t is L.PReLU:
        return [a if a.shape[-1] == 1 else np.compress(in_keep, a, axis=-1) for a in w]
    raise UnsupportedLayerError(f"cannot slice the weights of {layer.name!r} ({t.__name__})")


def zero_removed(layer: tf.keras.layers.Layer, in_keep: np.ndarray, out_keep: np.ndarray) -> None:
    """Zeroes, in place, the weights that produce the removed channels of ``layer``.

    Producers (Conv2D, SeparableConv2D, Dense): the removed filters' kernel slices and
    biases. DepthwiseConv2D: the removed channels' kernel slices and biases.
    BatchNormalization: gamma and beta of removed channels (and the moving mean when the
    layer has no gamma), so its output is exactly 0 there in inference. GroupNormalization
    (a registered slicer): gamma and beta of the removed channels (whole groups). Others: nothing.
    """
    t = type(layer)
    drop_out, drop_in = ~out_keep, ~in_keep
    if not layer.weights or not (drop_out.any() or drop_in.any()):
        return
    if t in SLICERS:
        SLICERS[t][1](layer, in_keep, out_keep)
        return
    w = layer.get_weights()
    if t in (L.Conv2D, L.Dense) and drop_out.any():
        w[0][..., drop_out] = 0
        for b in w[1:]:
            b[drop_out] = 0
    elif t is L.SeparableConv2D and drop_out.any():
        w[1][..., drop_out] = 0
        for b in w[2:]:
            b[drop_out] = 0
    elif t is L.DepthwiseConv2D:
        w[0][:, :, drop_in, :] = 0
        for b in w[1:]:
            b[drop_out] = 0
    elif t is L.BatchNormalization:
        names = [_var_name(v) for v in layer.weights]
        for value, name in zip(w, names):
            if name in ("gamma", "beta") or (name == "moving_mean" and not layer.scale):
                value[drop_in] = 0
    layer.set_weights(w)


def _slice_channel_vectors(layer, in_keep: np.ndarray, out_keep: np.ndarray) -> list[np.ndarray]:
    return [v[in_keep] for v in layer.get_weights()]


def _zero_channel_vectors(layer, in_keep: np.ndarray, out_keep: np.ndarray) -> None:
    values = layer.get_weights()
    for value in values:
        value[~in_keep] = 0
    layer.set_weights(values)


# GroupNormalization: gamma and beta, shape (C,); zeroing both makes a removed group's output 0.
register_layer_slicer(L.GroupNormalization, _slice_channel_vectors, _zero_channel_vectors)
