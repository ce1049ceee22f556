"""Channel flow through a Keras model: which layers a conv filter's removal touches.

Removing output channel ``c`` of a Conv2D removes every tensor coupled to it
(the Torch-Pruning dependency idea): the conv's kernel slice and bias entry, the
per-channel weights of layers the channel passes through (BatchNormalization,
DepthwiseConv2D, PReLU), and the matching input rows of the next Conv2D / Dense
(through ``Flatten`` a channel maps to its spatial block of rows).

This module handles models in which every coupled tensor has one producer (chains,
as in the paper's CNNs, and branching only *after* a consumer). Multi-input merges
(``Add``, ``Concatenate``: residual and Inception blocks) are refused with
:class:`UnsupportedLayerError` here; the dependency-group engine is a later stage.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

L = tf.keras.layers

# Layers a channel passes through unchanged and without weights of its own.
PASS_THROUGH = (L.ReLU, L.Activation, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Softmax,
                L.MaxPooling2D, L.AveragePooling2D, L.Dropout, L.SpatialDropout2D,
                L.GaussianNoise, L.GaussianDropout, L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.InputLayer)
# Layers with per-channel weights that follow their input channels.
CHANNEL_WISE = (L.BatchNormalization, L.DepthwiseConv2D, L.PReLU)
# Layers that map a channel to a block of output features.
RESHAPERS = (L.Flatten,)


class UnsupportedLayerError(ValueError):
    """A layer the engine cannot prune through (a barrier); the message names it and its type."""


def is_prunable_type(layer: tf.keras.layers.Layer) -> bool:
    """True for plain, ungrouped Conv2D layers (not subclasses such as Conv2DTranspose)."""
    return type(layer) is L.Conv2D and layer.groups == 1


@dataclasses.dataclass(frozen=True)
class ChannelPath:
    """What a prunable layer's output channels flow into.

    Attributes:
      source: name of the Conv2D whose filters are removed.
      through: names of pass-through / channel-wise / reshaping layers, in order.
      consumer: name of the Conv2D or Dense whose input channels (kernel axis 2, or
        Dense kernel rows) are sliced.
    """

    source: str
    through: tuple[str, ...]
    consumer: str


def _consumers(model: tf.keras.Model) -> dict[str, list[str]]:
    """Maps each layer name to the names of layers that call it (inside ``model``)."""
    out: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    if isinstance(model, tf.keras.Sequential):
        names = [layer.name for layer in model.layers]
        for a, b in zip(names, names[1:]):
            out[a].append(b)
        return out
    for layer in model.layers:
        nodes = [n for n in layer.inbound_nodes if n in _model_nodes(model)]
        if len(nodes) > 1:
            raise UnsupportedLayerError(f"layer {layer.name!r} ({type(layer).__name__}) is shared (called "
                                        f"{len(nodes)} times); shared layers cannot be pruned")
        for node in nodes:
            for parent in tf.nest.flatten(node.inbound_layers):
                if parent.name in out and layer.name not in out[parent.name]:
                    out[parent.name].append(layer.name)
    return out


def _model_nodes(model: tf.keras.Model) -> set:
    nodes = set()
    for depth_nodes in getattr(model, "_nodes_by_depth", {}).values():
        nodes.update(depth_nodes)
    return nodes


def output_layer_names(model: tf.keras.Model) -> set[str]:
    """Names of the layers that produce the model's outputs (never pruned)."""
    if isinstance(model, tf.keras.Sequential):
        return {model.layers[-1].name}
    return {t._keras_history.layer.name for t in tf.nest.flatten(model.outputs)}


def channel_paths(model: tf.keras.Model) -> dict[str, ChannelPath]:
    """Finds every prunable Conv2D and the path its output channels take to a consumer.

    A Conv2D is prunable when its output reaches exactly one Conv2D/Dense consumer
    through layers in ``PASS_THROUGH``, ``CHANNEL_WISE`` or ``RESHAPERS``, with no
    branching and no model output on the way. Convs that fail this are left out
    (never pruned); see :func:`barriers` for the reasons.

    Returns:
      dict from conv layer name to its :class:`ChannelPath`, in model layer order.
    """
    paths, _ = _analyse(model)
    return paths


def barriers(model: tf.keras.Model) -> dict[str, str]:
    """Conv2D layers that cannot be pruned, mapped to the reason (a human-readable string)."""
    _, reasons = _analyse(model)
    return reasons


def _analyse(model: tf.keras.Model) -> tuple[dict[str, ChannelPath], dict[str, str]]:
    consumers = _consumers(model)
    outputs = output_layer_names(model)
    by_name = {layer.name: layer for layer in model.layers}
    paths: dict[str, ChannelPath] = {}
    reasons: dict[str, str] = {}
    for layer in model.layers:
        if not is_prunable_type(layer):
            continue
        through: list[str] = []
        name: Optional[str] = layer.name
        reason = None
        while True:
            if name in outputs:
                reason = f"its channels reach the model output at {name!r}"
                break
            nxt = consumers[name]
            if len(nxt) != 1:
                reason = (f"{name!r} feeds {len(nxt)} layers ({', '.join(nxt)}); branching is not supported yet"
                          if nxt else f"{name!r} has no consumer")
                break
            child = by_name[nxt[0]]
            if is_prunable_type(child) or type(child) is L.Dense:
                paths[layer.name] = ChannelPath(layer.name, tuple(through), child.name)
                break
            if isinstance(child, PASS_THROUGH + CHANNEL_WISE + RESHAPERS):
                through.append(child.name)
                name = child.name
                continue
            reason = (f"{child.name!r} ({type(child).__name__}) is a layer type the pruning engine does not "
                      f"understand; it is a barrier")
            break
        if reason is not None:
            reasons[layer.name] = reason
    return paths, reasons
