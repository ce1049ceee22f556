"""Channel-dependency groups of a Keras model (the heart of the pruning engine).

Removing one output channel of a Conv2D is never a change to one tensor: the same
channel index is coupled to per-channel weights downstream (BatchNormalization,
DepthwiseConv2D, PReLU), to the input channels of every consumer (Conv2D kernel axis
2, Dense kernel rows, through ``Flatten`` a spatial block of rows), to every other
input of an element-wise merge (``Add``/``Subtract``/``Multiply``/``Average``/
``Maximum``/``Minimum``: residual partners and *their* producers), and to one slice of a
``Concatenate`` output. This is Torch-Pruning's dependency graph (Fang et al.,
"DepGraph", CVPR 2023) for Keras functional and Sequential models.

How it is computed: every channel position of every layer output is a node; each
layer type says which of its input positions are the *same* channel as which output
positions, and a union-find joins them. A connected set is one *coupled channel*:
removing it removes every position in it. Coupled channels that touch the same tensors
form a :class:`DependencyGroup` (e.g. the 16 channels of a ResNet stem that flow through
two residual stages), with a canonical channel index 0..C-1.

A group can be pruned only if it has at least one producer (a layer that creates the
channel: Conv2D, SeparableConv2D, Dense) and none of its positions is the model input,
a model output, or touches a *barrier*: a layer type the engine does not understand
(Reshape, Lambda, attention, ...), one that couples channels (Softmax, LayerNormalization,
a Concatenate/BatchNormalization on a non-channel axis), a shared layer, or an
activation that does not map 0 to 0 (sigmoid, softplus, ...: a removed channel would not
be equivalent to a zeroed one). Barriers are reported by :func:`dependency_graph`, never
silently mishandled.

Only ``channels_last`` models are supported (the Keras and TFLite default).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

L = tf.keras.layers

# Layers that create new channels from all input channels; their input channels are consumed.
PRODUCERS = (L.Conv2D, L.SeparableConv2D, L.Dense)
# Layers whose weights are per channel and follow their input channels.
CHANNEL_WISE = (L.BatchNormalization, L.DepthwiseConv2D, L.PReLU)
# Weightless layers that keep each channel separate.
PASS_THROUGH = (L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation,
                L.MaxPooling2D, L.AveragePooling2D, L.MaxPooling1D, L.AveragePooling1D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D, L.GlobalMaxPooling1D,
                L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
                L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D)
MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Element-wise activations with f(0) == 0: a zeroed channel stays zero through them.
ZERO_PRESERVING = frozenset({"linear", "relu", "relu6", "elu", "selu", "tanh", "swish", "silu", "gelu",
                             "softsign", "leaky_relu", "mish"})


class UnsupportedLayerError(ValueError):
    """A request touches a channel the engine cannot prune; the message names the layer and the reason."""


def _activation_name(activation) -> str:
    return getattr(activation, "__name__", str(activation))


def _shape(layer) -> tuple:
    shape = layer.output_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise UnsupportedLayerError(f"layer {layer.name!r} has {len(shape)} outputs")
        shape = shape[0]
    return tuple(shape)


@dataclasses.dataclass(frozen=True)
class DependencyGroup:
    """Channels that must be removed together, with a canonical index ``0..channels-1``.

    Attributes:
      id: position in :attr:`DependencyGraph.groups`.
      channels: number of coupled channels (e.g. a conv's filters, or a residual stage's width).
      producers: layers whose *output* channels are this group's channels (their filters are removed).
      channel_wise: layers with per-channel weights on the way (BatchNormalization, DepthwiseConv2D, PReLU).
      consumers: layers whose *input* channels (Conv2D kernel axis 2, Dense rows) are sliced.
      layers: every member whose weights are sliced (producers, channel-wise layers, consumers), in model order.
      tensors: layer names whose output tensors carry the group's channels.
      prunable: False if a barrier, the model input or a model output touches the group.
      reason: why the group is not prunable ('' if it is).
      producer_index: producer name -> int64 array ``(channels,)`` mapping canonical channel to its filter index.
    """

    id: int
    channels: int
    producers: tuple[str, ...]
    channel_wise: tuple[str, ...]
    consumers: tuple[str, ...]
    layers: tuple[str, ...]
    tensors: tuple[str, ...]
    prunable: bool
    reason: str
    producer_index: dict = dataclasses.field(repr=False, compare=False)


class DependencyGraph:
    """Coupled channels of a Keras model: groups, barriers and position-level bookkeeping.

    Built by :func:`dependency_graph`. Surgery uses :meth:`keep_masks` to turn a set of
    removed (group, channel) pairs into a keep-mask for every layer output.

    Attributes:
      groups: list of :class:`DependencyGroup`, prunable ones first in model order.
      barriers: layer name -> human-readable reason the layer blocks pruning.
      layer_inputs: layer name -> names of the layers whose outputs it consumes.
      channels: layer name -> channel count of its output (last axis).
    """

    def __init__(self, groups, barriers, layer_inputs, channels, comp_of, comp_group, comp_canonical):
        self.groups: list[DependencyGroup] = groups
        self.barriers: dict[str, str] = barriers
        self.layer_inputs: dict[str, list[str]] = layer_inputs
        self.channels: dict[str, int] = channels
        self._comp_of = comp_of            # tensor -> int array (positions,) of coupled-channel ids
        self._comp_group = comp_group      # coupled-channel id -> group id
        self._comp_canonical = comp_canonical  # coupled-channel id -> canonical index in its group

    def group_of(self, layer: str) -> Optional[DependencyGroup]:
        """The group whose channels ``layer`` produces (its output channels), or None."""
        for g in self.groups:
            if layer in g.producers:
                return g
        for g in self.groups:
            if layer in g.tensors:
                return g
        return None

    def keep_masks(self, pruned: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep-mask of every layer output given removed canonical channels per group id.

        Args:
          pruned: group id -> int array of removed canonical channel indices.

        Returns:
          layer name -> bool array ``(positions,)`` over the output's last axis (True = kept).
        """
        removed = np.zeros(len(self._comp_group), dtype=bool)
        lookup = {}
        for comp, (gid, idx) in enumerate(zip(self._comp_group, self._comp_canonical)):
            lookup[(int(gid), int(idx))] = comp
        for gid, idx in pruned.items():
            for i in np.asarray(idx, dtype=np.int64):
                removed[lookup[(int(gid), int(i))]] = True
        return {t: ~removed[comps] for t, comps in self._comp_of.items()}


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _model_nodes(model) -> set:
    nodes = set()
    for depth_nodes in getattr(model, "_nodes_by_depth", {}).values():
        nodes.update(depth_nodes)
    return nodes


def _wiring(model) -> tuple[list, dict[str, list[str]], dict[str, str]]:
    """(layers in model order incl. the input, inputs per layer, layers called more than once)."""
    if isinstance(model, tf.keras.Sequential):
        layers = list(model.layers)
        inputs = {layers[0].name: ["__input__"]}
        for a, b in zip(layers, layers[1:]):
            inputs[b.name] = [a.name]
        return layers, inputs, {}
    if not getattr(model, "_is_graph_network", False):
        raise UnsupportedLayerError(f"model {model.name!r} is a subclassed Keras model; the pruning engine needs a "
                                    f"functional or Sequential model (its layer graph)")
    nodes = _model_nodes(model)
    inputs, shared = {}, {}
    for layer in model.layers:
        mine = [n for n in layer._inbound_nodes if n in nodes]
        if len(mine) > 1:
            shared[layer.name] = f"{layer.name!r} ({type(layer).__name__}) is shared (called {len(mine)} times)"
        ins = []
        for node in mine[:1]:
            for parent, _, tensor_index, _ in node.iterate_inbound():
                if tensor_index != 0:
                    shared[layer.name] = f"{layer.name!r} reads output {tensor_index} of multi-output {parent.name!r}"
                ins.append(parent.name)
        inputs[layer.name] = ins
    return list(model.layers), inputs, shared


def output_layer_names(model: tf.keras.Model) -> set[str]:
    """Names of the layers that produce the model's outputs (never pruned)."""
    if isinstance(model, tf.keras.Sequential):
        return {model.layers[-1].name}
    return {t._keras_history.layer.name for t in tf.nest.flatten(model.outputs)}


def _is_channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def dependency_graph(model: tf.keras.Model) -> DependencyGraph:
    """Builds the channel-dependency groups of ``model`` (see the module docstring).

    Args:
      model: a functional or Sequential ``tf.keras.Model`` (built: shapes known).

    Returns:
      a :class:`DependencyGraph`.

    Raises:
      UnsupportedLayerError: a subclassed model (no layer graph).
    """
    layers, inputs, shared = _wiring(model)
    by_name = {layer.name: layer for layer in layers}
    channels: dict[str, int] = {}
    if "__input__" in sum(inputs.values(), []):
        channels["__input__"] = int(model.input_shape[-1])
    for layer in layers:
        shape = _shape(layer)
        channels[layer.name] = int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 0
    offsets, total = {}, 0
    for t, c in channels.items():
        offsets[t] = total
        total += c
    uf = _UnionFind(total)
    blocked: dict[str, str] = {}   # tensor -> reason its channels cannot be removed
    barriers: dict[str, str] = dict(shared)
    producers: dict[str, str] = {}  # producer layer -> its output tensor (== its name)

    def pos(t: str, c) -> int:
        return offsets[t] + int(c)

    def block(tensors, reason):
        for t in tensors:
            blocked.setdefault(t, reason)

    if "__input__" in channels:
        block(["__input__"], "the model input")
    for name in output_layer_names(model):
        block([name], f"a model output ({name!r})")

    for layer in layers:
        name, ins = layer.name, inputs.get(layer.name, [])
        kind = type(layer).__name__
        if isinstance(layer, L.InputLayer):
            block([name], "the model input")
            continue
        if name in shared:
            block(ins + [name], shared[name])
            continue
        c_out = channels[name]
        reason = None
        if not _is_channels_last(layer):
            reason = f"{name!r} ({kind}) uses data_format={layer.data_format!r}; only channels_last is supported"
        elif type(layer) in PRODUCERS:
            if type(layer) is L.Conv2D and layer.groups != 1:
                reason = f"{name!r} (Conv2D) is a grouped convolution (groups={layer.groups})"
            else:
                producers[name] = name
                act = _activation_name(layer.activation)
                if act not in ZERO_PRESERVING:
                    block([name], f"{name!r} ends in activation {act!r}, which couples channels or maps 0 to a "
                                  f"non-zero value")
                continue
        elif isinstance(layer, L.BatchNormalization):
            axis = [a % len(_shape(layer)) for a in np.atleast_1d(layer.axis)]
            if axis != [len(_shape(layer)) - 1]:
                reason = f"{name!r} (BatchNormalization) normalizes axis {layer.axis}, not the channel axis"
            else:
                for c in range(c_out):
                    uf.union(pos(ins[0], c), pos(name, c))
                continue
        elif isinstance(layer, L.DepthwiseConv2D):
            m = layer.depth_multiplier
            for c in range(channels[ins[0]]):
                for j in range(m):
                    uf.union(pos(ins[0], c), pos(name, c * m + j))
            act = _activation_name(layer.activation)
            if act not in ZERO_PRESERVING:
                block([name], f"{name!r} ends in activation {act!r}, which maps 0 to a non-zero value")
            continue
        elif isinstance(layer, L.PReLU) or (isinstance(layer, PASS_THROUGH) and type(layer) in PASS_THROUGH):
            if isinstance(layer, L.Activation) and _activation_name(layer.activation) not in ZERO_PRESERVING:
                reason = (f"{name!r} (Activation {_activation_name(layer.activation)!r}) couples channels or maps "
                          f"0 to a non-zero value")
            elif c_out != channels[ins[0]]:
                reason = f"{name!r} ({kind}) changes the channel count"
            else:
                for c in range(c_out):
                    uf.union(pos(ins[0], c), pos(name, c))
                continue
        elif type(layer) is L.Flatten:
            c_in = channels[ins[0]]
            if c_in == 0 or c_out % c_in:
                reason = f"{name!r} (Flatten) input has no channel axis"
            else:
                for p in range(c_out // c_in):
                    for c in range(c_in):
                        uf.union(pos(ins[0], c), pos(name, p * c_in + c))
                continue
        elif type(layer) in MERGES:
            if any(channels[t] != c_out for t in ins):
                reason = f"{name!r} ({kind}) broadcasts inputs of different channel counts"
            else:
                for t in ins:
                    for c in range(c_out):
                        uf.union(pos(t, c), pos(name, c))
                continue
        elif type(layer) is L.Concatenate:
            if layer.axis not in (-1, len(_shape(layer)) - 1):
                reason = f"{name!r} (Concatenate) joins axis {layer.axis}, not the channel axis"
            else:
                off = 0
                for t in ins:
                    for c in range(channels[t]):
                        uf.union(pos(t, c), pos(name, off + c))
                    off += channels[t]
                continue
        else:
            reason = f"{name!r} ({kind}) is a layer type the pruning engine does not understand"
        barriers[name] = reason
        block(ins + [name], f"barrier {reason}")

    # Coupled channels (components) and their tensors.
    roots = np.array([uf.find(i) for i in range(total)], dtype=np.int64)
    comp_ids, comp_of_pos = np.unique(roots, return_inverse=True)
    comp_of = {t: comp_of_pos[offsets[t]:offsets[t] + c] for t, c in channels.items()}
    comp_tensors: list[set] = [set() for _ in comp_ids]
    for t, comps in comp_of.items():
        for comp in np.unique(comps):
            comp_tensors[comp].add(t)
    order = {layer.name: i for i, layer in enumerate(layers)}
    order["__input__"] = -1
    signatures: dict[tuple, list[int]] = {}
    for comp, ts in enumerate(comp_tensors):
        signatures.setdefault(tuple(sorted(ts, key=order.__getitem__)), []).append(comp)

    comp_group = np.zeros(len(comp_ids), dtype=np.int64)
    comp_canonical = np.zeros(len(comp_ids), dtype=np.int64)
    raw = []
    for sig, comps in signatures.items():
        root = sig[0]
        canon = {}
        reason = ""
        for comp in comps:
            where = np.flatnonzero(comp_of[root] == comp)
            if len(where) != 1:
                reason = f"a channel occupies {len(where)} positions of {root!r}"
            canon[comp] = int(where[0])
        comps = sorted(comps, key=canon.__getitem__)
        prods = tuple(t for t in sig if t in producers)
        blocked_by = [blocked[t] for t in sig if t in blocked]
        if blocked_by:
            reason = blocked_by[0]
        elif not prods:
            reason = "no layer produces these channels"
        sig_set = set(sig)
        chw = tuple(t for t in sig if isinstance(by_name.get(t), CHANNEL_WISE))
        cons = tuple(layer.name for layer in layers if type(layer) in PRODUCERS
                     and any(i in sig_set for i in inputs.get(layer.name, [])))
        members = set(prods) | set(chw) | set(cons)
        producer_index = {}
        for p in prods:
            idx = np.empty(len(comps), dtype=np.int64)
            for k, comp in enumerate(comps):
                idx[k] = np.flatnonzero(comp_of[p] == comp)[0]
            producer_index[p] = idx
        raw.append((comps, dict(channels=len(comps), producers=prods, channel_wise=chw, consumers=cons,
                                layers=tuple(sorted(members, key=order.__getitem__)),
                                tensors=tuple(t for t in sig if t != "__input__"), prunable=not reason,
                                reason=reason, producer_index=producer_index), order[sig[0]]))
    raw.sort(key=lambda r: (not r[1]["prunable"], r[2]))
    groups = []
    for gid, (comps, fields, _) in enumerate(raw):
        for k, comp in enumerate(comps):
            comp_group[comp], comp_canonical[comp] = gid, k
        groups.append(DependencyGroup(id=gid, **fields))
    layer_inputs = {layer.name: list(inputs.get(layer.name, [])) for layer in layers}
    return DependencyGraph(groups, barriers, layer_inputs, channels, comp_of, comp_group, comp_canonical)


def barriers(model: tf.keras.Model) -> dict[str, str]:
    """Layers that block pruning, mapped to the reason (human-readable)."""
    return dependency_graph(model).barriers
