"""Model surgery: physically remove Conv2D filters (and every coupled tensor).

``prune_model`` rebuilds the model from its Keras config with fewer filters and,
with ``weights="inherit"``, copies the survivors' weights: the kept filters' kernel
slices and biases, the matching entries of per-channel layers on the way
(BatchNormalization gamma/beta/moving mean/variance, DepthwiseConv2D, PReLU), and
the matching input channels of the next Conv2D or rows of the next Dense (through
``Flatten``, each channel's spatial block of rows). The result computes exactly
what ``mask_model`` computes: the original with the removed filters zeroed.

``weights="reinit"`` returns the smaller architecture with fresh initial weights,
as the paper's public code does after every prune.
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tff_prune.pruning.graph import ChannelPath, barriers, channel_paths

L = tf.keras.layers
WEIGHT_MODES = ("inherit", "reinit")


def _validate_keep(model: tf.keras.Model, keep: Mapping[str, Sequence[int]],
                   paths: Mapping[str, ChannelPath]) -> dict[str, np.ndarray]:
    out = {}
    for name, idx in keep.items():
        if name not in paths:
            names = [layer.name for layer in model.layers]
            if name not in names:
                raise ValueError(f"keep names layer {name!r}, which is not in the model; prunable layers: "
                                 f"{list(paths)}")
            why = barriers(model).get(name, "it is not a Conv2D")
            raise ValueError(f"layer {name!r} cannot be pruned: {why}; prunable layers: {list(paths)}")
        filters = model.get_layer(name).filters
        arr = np.asarray(idx)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"keep[{name!r}] must be a non-empty 1-D sequence of filter indices "
                             f"(at least one filter must stay), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"keep[{name!r}] must hold integer filter indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.min() < 0 or arr.max() >= filters:
            raise ValueError(f"keep[{name!r}] has indices outside [0, {filters}): {arr[(arr < 0) | (arr >= filters)]}")
        if len(np.unique(arr)) != len(arr):
            raise ValueError(f"keep[{name!r}] has duplicate filter indices")
        out[name] = np.sort(arr)
    return out


def _expand(layer: tf.keras.layers.Layer, sel: np.ndarray) -> np.ndarray:
    """Output-channel selection of a through-layer given its input-channel selection."""
    if isinstance(layer, L.DepthwiseConv2D):
        m = layer.depth_multiplier
        return (sel[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    if isinstance(layer, L.Flatten):
        shape = layer.input_shape
        channels = shape[-1]
        spatial = int(np.prod(shape[1:-1]))
        return (np.arange(spatial)[:, None] * channels + sel[None, :]).reshape(-1)
    return sel


def channel_selections(model: tf.keras.Model, keep: Mapping[str, np.ndarray],
                       paths: Mapping[str, ChannelPath]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-layer (input-channel, output-channel) selections implied by ``keep``.

    Returns:
      ``(in_sel, out_sel)``: dicts from layer name to sorted int64 indices of the
      original channels that survive; layers absent are untouched on that side.
    """
    in_sel, out_sel = {}, {}
    for name, idx in keep.items():
        out_sel[name] = idx
        current = idx
        for t in paths[name].through:
            layer = model.get_layer(t)
            in_sel[t] = current
            current = _expand(layer, current)
            out_sel[t] = current
        in_sel[paths[name].consumer] = current
    return in_sel, out_sel


def _slice_weights(layer: tf.keras.layers.Layer, ins: Optional[np.ndarray],
                   outs: Optional[np.ndarray]) -> list[np.ndarray]:
    w = layer.get_weights()
    if ins is None and outs is None:
        return w
    if isinstance(layer, (L.Conv2D, L.Dense)) and not isinstance(layer, L.DepthwiseConv2D):
        kernel = w[0]
        if ins is not None:
            kernel = np.take(kernel, ins, axis=-2)
        if outs is not None:
            kernel = np.take(kernel, outs, axis=-1)
        rest = [b if outs is None else b[outs] for b in w[1:]]
        return [kernel] + rest
    if isinstance(layer, L.DepthwiseConv2D):
        return [np.take(w[0], ins, axis=2)] + [b[outs] for b in w[1:]]
    if isinstance(layer, L.BatchNormalization):
        return [v[ins] for v in w]
    if isinstance(layer, L.PReLU):
        return [a if a.shape[-1] == 1 else a[..., ins] for a in w]
    if w:
        raise ValueError(f"cannot slice weights of layer {layer.name!r} ({type(layer).__name__})")
    return w


def _layer_configs(config: dict) -> dict[str, dict]:
    return {entry["config"]["name"]: entry["config"] for entry in config["layers"]}


def _reseed_initializers(layer_config: dict, seed: int) -> None:
    for key, value in layer_config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and isinstance(value.get("config"), dict) \
                and "seed" in value["config"]:
            value["config"]["seed"] = seed


def prune_model(model: tf.keras.Model, keep: Mapping[str, Sequence[int]], weights: str = "inherit",
                seed: Optional[int] = None) -> tf.keras.Model:
    """Returns a new, smaller Keras model with only the ``keep`` filters of each named Conv2D.

    Args:
      model: a Sequential or functional Keras model (not subclassed).
      keep: layer name -> indices of filters to keep (non-empty, unique, in range).
        Prunable layers not named keep all their filters.
      weights: ``"inherit"`` copies the surviving weights (the result equals
        ``mask_model(model, keep)`` on any input, up to float rounding);
        ``"reinit"`` gives every layer fresh weights from its initialiser (the
        authors' behaviour after a prune).
      seed: with ``"reinit"``, initialiser seed (layer i gets ``seed + i``); None
        keeps the initialisers' configured seeds.

    Returns:
      a new ``tf.keras.Model`` with the same layer names; ``model`` is not modified.

    Raises:
      ValueError: unknown weights mode; a layer in ``keep`` that is not in the model
        or cannot be pruned (the message gives the reason); bad indices.
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be 'inherit' or 'reinit', got {weights!r}")
    if not isinstance(model, tf.keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ValueError(f"model {model.name!r} is a subclassed Keras model; only Sequential and functional "
                         f"models can be rebuilt after pruning")
    paths = channel_paths(model)
    keep = _validate_keep(model, keep, paths)
    config = copy.deepcopy(model.get_config())
    layer_configs = _layer_configs(config)
    for name, idx in keep.items():
        layer_configs[name]["filters"] = int(len(idx))
    if weights == "reinit" and seed is not None:
        for i, layer in enumerate(model.layers):
            _reseed_initializers(layer_configs[layer.name], int(seed) + i)
    new = model.__class__.from_config(config)
    if weights == "inherit":
        in_sel, out_sel = channel_selections(model, keep, paths)
        for layer in model.layers:
            if layer.weights:
                new.get_layer(layer.name).set_weights(
                    _slice_weights(layer, in_sel.get(layer.name), out_sel.get(layer.name)))
    return new


def mask_model(model: tf.keras.Model, keep: Mapping[str, Sequence[int]]) -> tf.keras.Model:
    """A same-shaped copy of ``model`` whose removed filters produce exactly zero.

    For each Conv2D in ``keep``, the removed filters' kernel slices and biases are
    zeroed, and so are the removed channels' BatchNormalization gamma and beta and
    DepthwiseConv2D kernel and bias on the way to the next consumer.

    Raises:
      ValueError: as :func:`prune_model`.
    """
    paths = channel_paths(model)
    keep = _validate_keep(model, keep, paths)
    masked = tf.keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for name, idx in keep.items():
        removed = np.setdiff1d(np.arange(model.get_layer(name).filters), idx)
        conv = masked.get_layer(name)
        w = conv.get_weights()
        w[0][..., removed] = 0
        for b in w[1:]:
            b[removed] = 0
        conv.set_weights(w)
        current = removed
        for t in paths[name].through:
            layer = masked.get_layer(t)
            if isinstance(layer, L.BatchNormalization):
                w = layer.get_weights()
                names = [v.name.split("/")[-1].split(":")[0] for v in layer.weights]
                for v, vname in zip(w, names):
                    if vname in ("gamma", "beta"):
                        v[current] = 0
                layer.set_weights(w)
            elif isinstance(layer, L.DepthwiseConv2D):
                w = layer.get_weights()
                w[0][:, :, current, :] = 0
                current = _expand(layer, current)
                for b in w[1:]:
                    b[current] = 0
                layer.set_weights(w)
                continue
            current = _expand(layer, current)
    return masked
