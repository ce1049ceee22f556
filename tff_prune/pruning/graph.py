"""Channel-dependency groups of a Keras model (the heart of the pruning engine).

Removing one output channel of a Conv2D is never a change to one tensor: the same
channel index is coupled to per-channel weights downstream (BatchNormalization,
DepthwiseConv2D, PReLU), to the input channels of every consumer (Conv2D kernel axis
2, Dense kernel rows, through ``Flatten`` a spatial block of rows), to every other
input of an element-wise merge (``Add``/``Subtract``/``Multiply``/``Average``/
``Maximum``/``Minimum``, and ``x + y`` written as a TF op: residual partners and *their*
producers), and to one slice of a ``Concatenate`` output. This is Torch-Pruning's
dependency graph (Fang et al., "DepGraph", CVPR 2023) for Keras functional and
Sequential models, nested ones included.

How it is computed: every channel position of every layer output is a node; each
layer type has a *rule* (:data:`LAYER_RULES`, extensible with :func:`register_layer_rule`)
that says which of its input positions are the *same* channel as which output
positions, and a union-find joins them. A connected set is one *coupled channel*:
removing it removes every position in it. Coupled channels that touch the same tensors
form a :class:`DependencyGroup` (e.g. the 16 channels of a ResNet stem that flow through
two residual stages), with a canonical channel index 0..C-1.

Exactness (pruned == masked). The masked model zeroes a removed channel's producing
filters and biases and its BatchNormalization gamma/beta and DepthwiseConv2D kernel
slices. Removing the channel is exact iff every layer that *consumes* it (the
input-channel axis of a Conv2D, SeparableConv2D or Dense kernel) reads exactly 0 there
in the masked model. The engine proves this per channel with a zero analysis that
follows each rule's zero law:

- ``preserve``: f(0) = 0 element-wise (ReLU, ReLU6, swish, pooling, padding, reshape,
  ``x * c``, ``x / c``, ``x + 0``): zero in, zero out; merges ``Add``/``Subtract``/
  ``Average``/``Maximum``/``Minimum`` and ``x + y``: zero iff *all* inputs are zero.
- ``any``: ``Multiply`` / ``x * y``: zero iff *any* input is zero. This is what makes a
  squeeze-excitation gate prunable: its sigmoid (or hard-sigmoid) output is 0.5, not 0,
  for a removed channel, but the gated tensor is 0 there, so the product is 0.
- ``reset``: BatchNormalization with gamma, DepthwiseConv2D (and Conv2D with
  ``groups == channels``) whose activation keeps 0: the mask zeroes their own weights of
  the channel, so their output is 0 whatever the input.
- ``nonzero``: f(0) != 0 (sigmoid, hard-sigmoid, softplus, ``x + 3``, Rescaling with an
  offset): a removed channel carries a constant there. That is allowed as long as it
  never reaches a consumer (it may be multiplied by a zero, as in an SE gate);
  otherwise the group is not prunable and its reason names the consumer and the cause.

A group can be pruned only if it has at least one producer (a layer that creates the
channel: Conv2D, SeparableConv2D, Dense, a grouped Conv2D), the zero analysis proves it
exact, and none of its positions is the model input, a model output, or touches a
*barrier*: a layer type the engine does not understand (Lambda, attention,
LayerNormalization, a custom layer without a registered rule, ...), one that couples
channels (a Concatenate/BatchNormalization on a non-channel axis, a Reshape that changes
the last axis), or a shared layer. Barriers are reported by :func:`dependency_graph`,
never silently mishandled. A softmax (``Softmax``, ``Activation("softmax")``) couples the
channels it normalizes too, but only blocks its own group (the class scores), without
cutting the graph.

Nested models: a Functional or Sequential model used as a layer (a backbone inside a
head model) is walked into; its layers are named ``"<nested model>/<layer>"`` in groups,
plans and masks, and the pruned model keeps the nesting (the backbone stays one layer
of the same name). A nested model called more than once is a barrier.

Grouped convolutions (``Conv2D(groups=g)``): with ``groups == input channels`` the layer
is a depthwise convolution (channel-wise, each input channel with its ``filters / g``
outputs). Otherwise it removes the *same within-group indices in every group*
(Torch-Pruning's rule): input channel ``j`` of every group is one coupled channel (so is
output channel ``j`` of every group), and ``groups`` stays.

GroupNormalization (Wu & He, ECCV 2018) normalizes each group of ``C / groups`` consecutive
channels with that group's own mean and variance: a group is removed whole (its channels are
tied; the kept groups' statistics do not change, so pruned == masked holds), and the pruned
layer keeps its channels per group, with ``groups`` reduced to the kept groups.

Only ``channels_last`` models are supported (the Keras and TFLite default).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

try:
    from keras.src.engine.keras_tensor import KerasTensor
    from keras.src.layers.core.tf_op_layer import TFOpLambda
except ImportError:  # pragma: no cover - other Keras 2 layouts
    from keras.engine.keras_tensor import KerasTensor
    from keras.layers.core.tf_op_layer import TFOpLambda

L = tf.keras.layers

# Layers that create new channels from all input channels; their input channels are consumed.
PRODUCERS = (L.Conv2D, L.SeparableConv2D, L.Dense)
# Layers whose weights are per channel and follow their input channels.
CHANNEL_WISE = (L.BatchNormalization, L.DepthwiseConv2D, L.PReLU)
# Weightless layers that keep each channel separate and map 0 to 0.
PASS_THROUGH = (L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation,
                L.MaxPooling2D, L.AveragePooling2D, L.MaxPooling1D, L.AveragePooling1D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D, L.GlobalMaxPooling1D,
                L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
                L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D)
MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Element-wise activations with f(0) == 0: a zeroed channel stays zero through them.
ZERO_PRESERVING = frozenset({"linear", "relu", "relu6", "elu", "selu", "tanh", "swish", "silu", "gelu",
                             "softsign", "leaky_relu", "mish", "hard_swish", "hard_silu"})
# Element-wise activations with f(0) != 0: fine if the channel is multiplied by a zero before any consumer.
NONZERO_AT_ZERO = frozenset({"sigmoid", "hard_sigmoid", "softplus", "exponential"})

# TF ops (TFOpLambda.symbol) the engine understands, by zero law.
TF_UNARY_ZERO = frozenset({"nn.relu", "nn.relu6", "nn.elu", "nn.selu", "nn.silu", "nn.swish", "nn.gelu",
                           "nn.leaky_relu", "math.tanh", "math.negative", "math.abs", "math.square",
                           "math.softsign", "identity", "nn.dropout"})
TF_UNARY_NONZERO = frozenset({"math.sigmoid", "nn.sigmoid", "math.softplus", "nn.softplus", "math.exp",
                              "math.cos"})
TF_ADD = frozenset({"math.add", "__operators__.add", "math.add_n"})
TF_SUBTRACT = frozenset({"math.subtract", "__operators__.sub"})
TF_MULTIPLY = frozenset({"math.multiply", "__operators__.mul"})
TF_DIVIDE = frozenset({"math.truediv", "math.divide", "__operators__.truediv"})
TF_MAX_MIN = frozenset({"math.maximum", "math.minimum"})


class UnsupportedLayerError(ValueError):
    """A request touches a channel the engine cannot prune; the message names the layer and the reason."""


def _activation_name(activation) -> str:
    return getattr(activation, "__name__", str(activation))


def activation_zero_law(activation) -> Optional[str]:
    """``"preserve"`` (f(0) = 0), ``"nonzero"`` (f(0) != 0, element-wise) or None (unknown or couples channels)."""
    name = _activation_name(activation)
    if name in ZERO_PRESERVING:
        return "preserve"
    if name in NONZERO_AT_ZERO:
        return "nonzero"
    return None


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
      channel_wise: layers with per-channel weights on the way (BatchNormalization, DepthwiseConv2D, PReLU,
        depthwise Conv2D with ``groups == channels``).
      consumers: layers whose *input* channels (Conv2D kernel axis 2, Dense rows) are sliced.
      layers: every member whose weights are sliced (producers, channel-wise layers, consumers), in model order.
      tensors: layer names whose output tensors carry the group's channels.
      prunable: False if a barrier, the model input or a model output touches the group, or removing a
        channel would not be exact (the zero analysis, module docstring).
      reason: why the group is not prunable ('' if it is).
      producer_index: producer name -> int64 array ``(channels,)``: each canonical channel's first filter index.
      producer_positions: producer name -> int64 array ``(channels, r)``: all ``r`` filter indices of each
        canonical channel (``r > 1`` when a grouped convolution ties index ``j`` of every group together).
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
    producer_positions: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


class DependencyGraph:
    """Coupled channels of a Keras model: groups, barriers and position-level bookkeeping.

    Built by :func:`dependency_graph`. Surgery uses :meth:`keep_masks` to turn a set of
    removed (group, channel) pairs into a keep-mask for every layer output.

    Attributes:
      groups: list of :class:`DependencyGroup`, prunable ones first in model order.
      barriers: layer name -> human-readable reason the layer blocks pruning.
      layer_inputs: layer name -> names of the layers whose outputs it consumes.
      channels: layer name -> channel count of its output (last axis).
      layers: layer name -> the Keras layer, for every leaf layer (nested models walked into; names of
        layers inside a nested model are ``"<nested model>/<layer>"``), in model order.
    """

    def __init__(self, groups, barriers, layer_inputs, channels, comp_of, comp_group, comp_canonical,
                 layers=None):
        self.groups: list[DependencyGroup] = groups
        self.barriers: dict[str, str] = barriers
        self.layer_inputs: dict[str, list[str]] = layer_inputs
        self.channels: dict[str, int] = channels
        self.layers: dict[str, tf.keras.layers.Layer] = layers or {}
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

    def positions(self, group: DependencyGroup, tensor: str) -> np.ndarray:
        """Positions of each canonical channel of ``group`` on the last axis of ``tensor``'s output.

        Returns:
          int64 array ``(group.channels, r)`` (``r`` positions per channel, the same for every channel).

        Raises:
          ValueError: ``tensor`` does not carry the group, or its channels occupy unequal numbers of positions.
        """
        comps = self._comp_of[tensor]
        mine = np.flatnonzero(self._comp_group[comps] == group.id)
        if not mine.size:
            raise ValueError(f"{tensor!r} does not carry the channels of group {group.id}")
        canon = self._comp_canonical[comps[mine]]
        counts = np.bincount(canon, minlength=group.channels)
        if counts.min() != counts.max():
            raise ValueError(f"channels of group {group.id} occupy unequal numbers of positions of {tensor!r}")
        order = np.argsort(canon, kind="stable")
        return mine[order].reshape(group.channels, counts[0]).astype(np.int64)

    def keep_masks(self, pruned: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep-mask of every layer output given removed canonical channels per group id.

        Args:
          pruned: group id -> int array of removed canonical channel indices.

        Returns:
          layer name -> bool array ``(positions,)`` over the output's last axis (True = kept).
        """
        removed = np.zeros(len(self._comp_group), dtype=bool)
        for gid, idx in pruned.items():
            idx = np.asarray(idx, dtype=np.int64)
            if idx.size:
                removed[(self._comp_group == int(gid)) & np.isin(self._comp_canonical, idx)] = True
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


class _Barrier(Exception):
    pass


class LayerContext:
    """What a layer rule sees of one layer, and how it declares its channel couplings.

    A rule (see :func:`register_layer_rule`) is called once per layer with this context. It
    declares the layer's behaviour with the methods below, or calls :meth:`barrier`.

    Attributes:
      layer: the Keras layer; name: its (qualified) name; node: its inbound Keras node (call
        arguments, for TF ops), or None.
      inputs: names of the input tensors; in_channels: their channel counts (last axis);
        out_channels: the output's channel count; in_shapes / out_shape: full Keras shapes.
    """

    def __init__(self, layer, name, inputs, in_channels, out_channels, in_shapes, out_shape, node):
        self.layer, self.name, self.node = layer, name, node
        self.inputs, self.in_channels, self.out_channels = inputs, in_channels, out_channels
        self.in_shapes, self.out_shape = in_shapes, out_shape
        self.couplings: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.ties: list[tuple[Optional[int], np.ndarray]] = []
        self.consumed: list[int] = []
        self.produced: Optional[bool] = None
        self.zero_law = "preserve"
        self.nonzero_cause = ""
        self.weighted = False
        self.blocked = ""

    def barrier(self, reason: str):
        """The layer blocks pruning of its inputs' and output's channels; ``reason`` is reported.

        Raises:
          an internal exception that :func:`dependency_graph` catches (the rule stops here).
        """
        raise _Barrier(reason)

    def identity(self, i: int = 0) -> None:
        """Input ``i``'s channel ``c`` is output channel ``c``; a barrier if the channel counts differ."""
        if self.in_channels[i] != self.out_channels:
            self.barrier(f"{self.name!r} ({type(self.layer).__name__}) changes the channel count")
        idx = np.arange(self.out_channels)
        self.couplings.append((i, idx, idx))

    def couple(self, i: int, in_positions, out_positions) -> None:
        """Input ``i``'s positions ``in_positions[k]`` are the same channels as ``out_positions[k]``.

        Args:
          i: index into :attr:`inputs`; in_positions, out_positions: int arrays of equal length ``(n,)``,
            positions on the last axis of input ``i`` and of the output.
        """
        self.couplings.append((i, np.asarray(in_positions, np.int64), np.asarray(out_positions, np.int64)))

    def tie(self, i: Optional[int], positions) -> None:
        """Positions (int array ``(n,)`` on the last axis) of input ``i`` (None: of the output) are one channel.

        Tied positions are removed together or not at all (a grouped conv's index ``j`` in every group).
        """
        self.ties.append((i, np.asarray(positions, np.int64)))

    def produce(self, zero: bool, cause: str = "") -> None:
        """The output channels are this layer's filters; ``zero``: its output is 0 when a filter is zeroed."""
        self.produced = bool(zero)
        self.nonzero_cause = cause

    def consume(self, i: int = 0) -> None:
        """Input ``i``'s channels are an axis of this layer's weights: removing one is exact only if it is 0."""
        self.consumed.append(i)

    def law(self, zero_law: str, cause: str = "") -> None:
        """How the output's zeros follow from the inputs': 'preserve', 'any', 'reset' or 'nonzero'."""
        if zero_law not in ("preserve", "any", "reset", "nonzero"):
            raise ValueError(f"unknown zero law {zero_law!r}")
        self.zero_law, self.nonzero_cause = zero_law, cause

    def block(self, reason: str) -> None:
        """The output's channels must not be removed (not a barrier: the inputs stay free)."""
        self.blocked = reason

    @property
    def kind(self) -> str:
        """The layer's class name, for messages."""
        return type(self.layer).__name__


LayerRule = Callable[[LayerContext], None]
LAYER_RULES: dict[type, LayerRule] = {}


def register_layer_rule(layer_type: type, rule: LayerRule) -> None:
    """Teaches the engine a layer type (exact type, not subclasses): ``rule(ctx: LayerContext) -> None``.

    The rule declares how channels flow (``ctx.identity()``, ``ctx.couple(...)``, ``ctx.tie(...)``),
    whether the layer creates channels (``ctx.produce(zero)``) or slices its input channels out of
    its weights (``ctx.consume(i)``), its zero law (``ctx.law(...)``), and ``ctx.weighted = True``
    if it has per-channel weights; or it calls ``ctx.barrier(reason)``. A layer with per-channel
    weights also needs a slicer and a zeroer (:func:`tff_prune.pruning.slicing.register_layer_slicer`).

    Example (a custom per-channel scale ``y = x * gamma``)::

        def scale_rule(ctx):
            ctx.identity(); ctx.weighted = True    # zero in, zero out
        register_layer_rule(MyScale, scale_rule)
    """
    if not isinstance(layer_type, type):
        raise TypeError(f"layer_type must be a class, got {layer_type!r}")
    LAYER_RULES[layer_type] = rule


def _act_rule(ctx: LayerContext, activation) -> None:
    law = activation_zero_law(activation)
    if _activation_name(activation) in ("softmax", "log_softmax"):
        # Couples the channels it normalizes: none of them may go, but they stay one tensor (class scores).
        ctx.block(f"{ctx.name!r} ({ctx.kind} {_activation_name(activation)!r}) couples the channels it normalizes")
        return
    if law is None:
        ctx.barrier(f"{ctx.name!r} ({ctx.kind}) has activation {_activation_name(activation)!r}, which couples "
                    f"channels or is unknown to the engine")
    if law == "nonzero":
        ctx.law("nonzero", f"{ctx.name!r} ({ctx.kind} {_activation_name(activation)!r}) maps 0 to a non-zero value")


def _producer_rule(ctx: LayerContext) -> None:
    layer = ctx.layer
    law = activation_zero_law(layer.activation)
    act = _activation_name(layer.activation)
    if law is None:
        ctx.produce(False)
        ctx.block(f"{ctx.name!r} ends in activation {act!r}, which couples channels or maps 0 to a non-zero value")
    else:
        ctx.produce(law == "preserve", f"{ctx.name!r} ends in activation {act!r}, which maps 0 to a non-zero value")
    ctx.consume(0)


def _conv2d_rule(ctx: LayerContext) -> None:
    layer = ctx.layer
    g = int(layer.groups)
    if g == 1:
        return _producer_rule(ctx)
    c_in, c_out = ctx.in_channels[0], ctx.out_channels
    a, b = c_in // g, c_out // g
    if a == 1:  # depthwise: input channel c -> outputs c*b .. c*b+b-1
        ctx.couple(0, np.repeat(np.arange(c_in), b), np.arange(c_out))
        ctx.weighted = True
        law = activation_zero_law(layer.activation)
        if law is None:
            ctx.barrier(f"{ctx.name!r} (grouped Conv2D) has activation {_activation_name(layer.activation)!r}")
        ctx.law("reset" if law == "preserve" else "nonzero",
                f"{ctx.name!r} ends in activation {_activation_name(layer.activation)!r}, which maps 0 to non-zero")
        return
    # Same within-group indices in every group (Torch-Pruning): groups stay, the group width shrinks.
    for j in range(a):
        ctx.tie(0, np.arange(g) * a + j)
    for j in range(b):
        ctx.tie(None, np.arange(g) * b + j)
    _producer_rule(ctx)


def _depthwise_rule(ctx: LayerContext) -> None:
    m = ctx.layer.depth_multiplier
    ctx.couple(0, np.repeat(np.arange(ctx.in_channels[0]), m), np.arange(ctx.out_channels))
    ctx.weighted = True
    law = activation_zero_law(ctx.layer.activation)
    if law is None:
        ctx.barrier(f"{ctx.name!r} (DepthwiseConv2D) has activation {_activation_name(ctx.layer.activation)!r}")
    ctx.law("reset" if law == "preserve" else "nonzero",
            f"{ctx.name!r} ends in activation {_activation_name(ctx.layer.activation)!r}, which maps 0 to non-zero")


def _batchnorm_rule(ctx: LayerContext) -> None:
    rank = len(ctx.out_shape)
    axis = [a % rank for a in np.atleast_1d(ctx.layer.axis)]
    if axis != [rank - 1]:
        ctx.barrier(f"{ctx.name!r} (BatchNormalization) normalizes axis {ctx.layer.axis}, not the channel axis")
    ctx.identity()
    ctx.weighted = True
    # With gamma the mask zeroes gamma and beta: 0 out whatever comes in; without, (x - mean) / sd with mean 0.
    ctx.law("reset" if ctx.layer.scale else "preserve")


def _groupnorm_rule(ctx: LayerContext) -> None:
    rank = len(ctx.out_shape)
    axis = [a % rank for a in np.atleast_1d(ctx.layer.axis)]
    if axis != [rank - 1]:
        ctx.barrier(f"{ctx.name!r} (GroupNormalization) normalizes groups on axis {ctx.layer.axis}, not the "
                    f"channel axis")
    ctx.identity()
    # A group's channels share one mean and variance: removing part of a group would change the statistics
    # of the channels that stay. Whole groups go (the kept groups' statistics are untouched), and the layer
    # keeps its channels per group (its ``groups`` shrinks).
    size = ctx.out_channels // int(ctx.layer.groups)
    for k in range(int(ctx.layer.groups)):
        ctx.tie(None, np.arange(k * size, (k + 1) * size))
    ctx.weighted = True
    # With gamma the mask zeroes gamma and beta: 0 out whatever comes in. Without: a removed group's inputs
    # are all 0, so its mean and variance are 0 and (x - mean) / sqrt(var + eps) = 0.
    ctx.law("reset" if ctx.layer.scale else "preserve")


def _prelu_rule(ctx: LayerContext) -> None:
    ctx.identity()
    ctx.weighted = True


def _pass_through_rule(ctx: LayerContext) -> None:
    layer = ctx.layer
    if isinstance(layer, L.Activation):
        _act_rule(ctx, layer.activation)
    elif type(layer) is L.ReLU and float(layer.threshold) > 0 and float(layer.negative_slope) != 0:
        ctx.law("nonzero", f"{ctx.name!r} (ReLU threshold {float(layer.threshold):g}) maps 0 to a non-zero value")
    ctx.identity()


def _flatten_rule(ctx: LayerContext) -> None:
    c_in = ctx.in_channels[0]
    if c_in == 0 or ctx.out_channels % c_in:
        ctx.barrier(f"{ctx.name!r} (Flatten) input has no channel axis")
    reps = ctx.out_channels // c_in
    ctx.couple(0, np.tile(np.arange(c_in), reps), np.arange(ctx.out_channels))


def _reshape_rule(ctx: LayerContext) -> None:
    # Row-major reshapes that keep the last axis keep every channel: (C,) -> (1, 1, C), (H, W, C) -> (H*W, C).
    if ctx.in_channels[0] != ctx.out_channels or len(ctx.in_shapes[0]) < 2 or len(ctx.out_shape) < 2:
        ctx.barrier(f"{ctx.name!r} (Reshape) changes the last (channel) axis {ctx.in_shapes[0][1:]} -> "
                    f"{ctx.out_shape[1:]}")
    ctx.identity()


def _merge_rule(ctx: LayerContext) -> None:
    if any(c != ctx.out_channels for c in ctx.in_channels):
        ctx.barrier(f"{ctx.name!r} ({ctx.kind}) broadcasts inputs of different channel counts")
    for i in range(len(ctx.inputs)):
        ctx.identity(i)
    ctx.law("any" if type(ctx.layer) is L.Multiply else "preserve")


def _concatenate_rule(ctx: LayerContext) -> None:
    if ctx.layer.axis not in (-1, len(ctx.out_shape) - 1):
        ctx.barrier(f"{ctx.name!r} (Concatenate) joins axis {ctx.layer.axis}, not the channel axis")
    off = 0
    for i, c in enumerate(ctx.in_channels):
        ctx.couple(i, np.arange(c), off + np.arange(c))
        off += c


def _rescaling_rule(ctx: LayerContext) -> None:
    scale, offset = (np.asarray(ctx.layer.scale, np.float64), np.asarray(ctx.layer.offset, np.float64))
    ctx.identity()
    if scale.size > 1 or offset.size > 1:
        ctx.block(f"{ctx.name!r} (Rescaling) has per-channel constants the engine does not slice")
    if np.any(offset != 0):
        ctx.law("nonzero", f"{ctx.name!r} (Rescaling offset {offset.ravel()[0]:g}) maps 0 to a non-zero value")


def _normalization_rule(ctx: LayerContext) -> None:
    ctx.identity()
    ctx.law("nonzero", f"{ctx.name!r} (Normalization) subtracts a mean")
    ctx.block(f"{ctx.name!r} (Normalization) has per-channel statistics the engine does not slice")


def tf_op_constants(node) -> tuple[list, list]:
    """(Keras-tensor arguments, other arguments) of a TF-op layer's call (the ``name`` keyword left out)."""
    args = list(node.call_args) + [v for k, v in node.call_kwargs.items() if k != "name"]
    tensors, constants = [], []
    for a in args:
        (tensors if isinstance(a, KerasTensor) else constants).append(a)
    return tensors, constants


def _tf_op_rule(ctx: LayerContext) -> None:
    symbol = getattr(ctx.layer, "symbol", None) or ctx.layer.get_config().get("function")
    what = f"{ctx.name!r} (TF op tf.{symbol})"
    if ctx.node is None:
        ctx.barrier(f"{what} has no call to inspect")
    tensors, constants = tf_op_constants(ctx.node)
    if symbol in TF_UNARY_ZERO or symbol in TF_UNARY_NONZERO:
        if len(tensors) != 1:
            ctx.barrier(f"{what} takes {len(tensors)} tensors")
        if constants and symbol not in ("nn.leaky_relu", "nn.dropout", "nn.gelu"):
            ctx.barrier(f"{what} has extra arguments the engine does not interpret")
        ctx.identity()
        if symbol in TF_UNARY_NONZERO:
            ctx.law("nonzero", f"{what} maps 0 to a non-zero value")
        return
    binary = TF_ADD | TF_SUBTRACT | TF_MULTIPLY | TF_DIVIDE | TF_MAX_MIN
    if symbol not in binary:
        ctx.barrier(f"{what} is not an element-wise op the engine understands")
    if len(tensors) >= 2 and not constants:
        if symbol in TF_DIVIDE:
            ctx.barrier(f"{what} divides by a tensor (a removed channel would be 0 / 0)")
        if any(c != ctx.out_channels for c in ctx.in_channels):
            ctx.barrier(f"{what} broadcasts inputs of different channel counts")
        for i in range(len(ctx.inputs)):
            ctx.identity(i)
        ctx.law("any" if symbol in TF_MULTIPLY else "preserve")
        return
    if len(tensors) != 1 or len(constants) != 1:
        ctx.barrier(f"{what} mixes {len(tensors)} tensors and {len(constants)} other arguments")
    first_is_tensor = isinstance(ctx.node.call_args[0], KerasTensor) if ctx.node.call_args else True
    try:
        c = np.asarray(constants[0], dtype=np.float64)
    except (TypeError, ValueError):
        ctx.barrier(f"{what} has a non-numeric argument")
    if c.size > 1 and (c.shape[-1] != ctx.out_channels or int(np.prod(c.shape[:-1])) != 1):
        ctx.barrier(f"{what} broadcasts a constant of shape {c.shape} that is not per channel")
    ctx.identity()
    if c.size > 1:
        ctx.weighted = True  # the per-channel constant lives in the layer's call; surgery slices it
    if symbol in TF_MULTIPLY or (symbol in TF_DIVIDE and first_is_tensor):
        return  # 0 * c = 0, 0 / c = 0
    if symbol in TF_DIVIDE:
        ctx.law("nonzero", f"{what} divides a constant by the channel")
    elif np.any(c != 0):
        ctx.law("nonzero", f"{what} adds a non-zero constant")


for _t in (L.Conv2D,):
    register_layer_rule(_t, _conv2d_rule)
for _t in (L.SeparableConv2D, L.Dense):
    register_layer_rule(_t, _producer_rule)
register_layer_rule(L.DepthwiseConv2D, _depthwise_rule)
register_layer_rule(L.BatchNormalization, _batchnorm_rule)
register_layer_rule(L.GroupNormalization, _groupnorm_rule)
register_layer_rule(L.PReLU, _prelu_rule)
for _t in PASS_THROUGH:
    register_layer_rule(_t, _pass_through_rule)
register_layer_rule(L.Flatten, _flatten_rule)
register_layer_rule(L.Softmax, lambda ctx: (ctx.identity(), ctx.block(f"{ctx.name!r} (Softmax) couples the channels "
                                                                     f"it normalizes")))
register_layer_rule(L.Reshape, _reshape_rule)
for _t in MERGES:
    register_layer_rule(_t, _merge_rule)
register_layer_rule(L.Concatenate, _concatenate_rule)
register_layer_rule(L.Rescaling, _rescaling_rule)
register_layer_rule(L.Normalization, _normalization_rule)
register_layer_rule(TFOpLambda, _tf_op_rule)


# ---------------------------------------------------------------------------------------------- wiring

@dataclasses.dataclass
class _Entry:
    name: str
    layer: object            # a Keras layer, or None for an alias of another tensor
    inputs: list
    node: object = None
    shared: str = ""
    is_input: bool = False


def _model_nodes(model) -> set:
    nodes = set()
    for depth_nodes in getattr(model, "_nodes_by_depth", {}).values():
        nodes.update(depth_nodes)
    return nodes


def is_nested_model(layer) -> bool:
    """True for a Functional or Sequential Keras model used as a layer (walked into by the engine)."""
    return isinstance(layer, tf.keras.Model) and (isinstance(layer, tf.keras.Sequential)
                                                  or getattr(layer, "_is_graph_network", False))


def _flatten_model(model, prefix: str, outer_inputs: Optional[list], entries: list) -> str:
    """Appends ``model``'s leaf layers to ``entries``; returns the name of the tensor that is its output."""
    if isinstance(model, tf.keras.Sequential):
        layers = list(model.layers)
        prev = outer_inputs[0] if outer_inputs else "__input__"
        if not outer_inputs:
            entries.append(_Entry("__input__", None, [], is_input=True))
        for layer in layers:
            prev = _add_layer(layer, prefix, [prev], None, "", entries)
        return prev
    if not getattr(model, "_is_graph_network", False):
        raise UnsupportedLayerError(f"model {model.name!r} is a subclassed Keras model; the pruning engine needs a "
                                    f"functional or Sequential model (its layer graph)")
    nodes = _model_nodes(model)
    input_layers = [t._keras_history.layer for t in tf.nest.flatten(model.inputs)]
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            name = prefix + layer.name
            if outer_inputs is None:
                entries.append(_Entry(name, layer, [], is_input=True))
            else:
                entries.append(_Entry(name, None, [outer_inputs[input_layers.index(layer)]]))
            continue
        mine = [n for n in layer._inbound_nodes if n in nodes]
        shared = ""
        if len(mine) > 1:
            shared = f"{layer.name!r} ({type(layer).__name__}) is shared (called {len(mine)} times)"
        ins = []
        for node in mine[:1]:
            for parent, _, tensor_index, _ in node.iterate_inbound():
                if tensor_index != 0:
                    shared = f"{layer.name!r} reads output {tensor_index} of multi-output {parent.name!r}"
                ins.append(prefix + parent.name)
        _add_layer(layer, prefix, ins, mine[0] if mine else None, shared, entries)
    outs = tf.nest.flatten(model.outputs)
    return prefix + outs[0]._keras_history.layer.name


def _add_layer(layer, prefix, ins, node, shared, entries) -> str:
    name = prefix + layer.name
    if is_nested_model(layer) and not shared:
        n_out = len(tf.nest.flatten(layer.outputs)) if not isinstance(layer, tf.keras.Sequential) else 1
        if n_out != 1:
            entries.append(_Entry(name, layer, ins, node, f"nested model {name!r} has {n_out} outputs"))
            return name
        out = _flatten_model(layer, name + "/", ins, entries)
        entries.append(_Entry(name, None, [out]))
        return name
    if is_nested_model(layer):
        shared = f"nested model {name!r} is called more than once"
    entries.append(_Entry(name, layer, ins, node, shared))
    return name


def leaf_layers(model: tf.keras.Model) -> dict[str, tf.keras.layers.Layer]:
    """Every layer of ``model`` with nested Functional/Sequential models walked into, by qualified name.

    Names inside a nested model are ``"<nested model name>/<layer name>"``. A nested model that is
    shared (called more than once) or has several outputs is one entry, not walked into.
    """
    entries: list[_Entry] = []
    _flatten_model(model, "", None, entries)
    return {e.name: e.layer for e in entries if e.layer is not None and not isinstance(e.layer, L.InputLayer)}


def resolve_layer(model: tf.keras.Model, name: str) -> tf.keras.layers.Layer:
    """The layer of ``model`` with qualified name ``name`` (``"outer/inner"`` reaches into nested models).

    Layer names may themselves contain ``/`` (MobileNetV3's ``expanded_conv/depthwise``): the
    longest prefix that names a layer of ``model`` is taken first.

    Raises:
      ValueError: no such layer.
    """
    names = {layer.name: layer for layer in model.layers}
    if name in names:
        return names[name]
    parts = name.split("/")
    for i in range(len(parts) - 1, 0, -1):
        head = "/".join(parts[:i])
        if head in names and is_nested_model(names[head]):
            return resolve_layer(names[head], "/".join(parts[i:]))
    raise ValueError(f"no layer {name!r} in model {model.name!r}")


def output_layer_names(model: tf.keras.Model) -> set[str]:
    """Names of the layers that produce the model's outputs (never pruned)."""
    if isinstance(model, tf.keras.Sequential):
        return {model.layers[-1].name}
    return {t._keras_history.layer.name for t in tf.nest.flatten(model.outputs)}


def _is_channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _out_shape(entry: _Entry, shapes: dict) -> tuple:
    if entry.layer is None:
        return shapes[entry.inputs[0]]
    if entry.is_input and not isinstance(entry.layer, L.InputLayer):
        return ()
    return _shape(entry.layer)


def dependency_graph(model: tf.keras.Model) -> DependencyGraph:
    """Builds the channel-dependency groups of ``model`` (see the module docstring).

    Args:
      model: a functional or Sequential ``tf.keras.Model`` (built: shapes known); nested
        Functional/Sequential models inside it are walked into.

    Returns:
      a :class:`DependencyGraph`.

    Raises:
      UnsupportedLayerError: a subclassed model (no layer graph).
    """
    entries: list[_Entry] = []
    _flatten_model(model, "", None, entries)
    shapes: dict[str, tuple] = {}
    channels: dict[str, int] = {}
    for e in entries:
        if e.name == "__input__":
            shape = (None,) + tuple(model.input_shape[1:])
        else:
            shape = _out_shape(e, shapes)
        shapes[e.name] = shape
        channels[e.name] = int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 0
    offsets, total = {}, 0
    for t, c in channels.items():
        offsets[t] = total
        total += c
    uf = _UnionFind(total)
    blocked: dict[str, str] = {}   # tensor -> reason its channels cannot be removed
    barriers: dict[str, str] = {}
    producers: set[str] = set()
    weighted: set[str] = set()
    consumers: dict[str, list[str]] = {}   # tensor -> layers that consume it
    zero = {t: np.zeros(c, dtype=bool) for t, c in channels.items()}
    cause: dict[str, str] = {}
    unsafe: dict[int, str] = {}  # position -> reason (resolved to coupled channels below)

    def block(tensors, reason):
        for t in tensors:
            blocked.setdefault(t, reason)

    for name in output_layer_names(model):
        block([name], f"a model output ({name!r})")

    for e in entries:
        name, ins = e.name, e.inputs
        if e.is_input:
            block([name], "the model input")
            continue
        if e.layer is None:  # alias: a nested model's input or output is the tensor it names
            for c in range(channels[name]):
                uf.union(offsets[ins[0]] + c, offsets[name] + c)
            zero[name] = zero[ins[0]].copy()
            if ins[0] in cause:
                cause[name] = cause[ins[0]]
            continue
        layer = e.layer
        if e.shared:
            barriers[name] = e.shared
            block(ins + [name], e.shared)
            continue
        ctx = LayerContext(layer, name, ins, [channels[t] for t in ins], channels[name],
                           [shapes[t] for t in ins], shapes[name], e.node)
        rule = LAYER_RULES.get(type(layer))
        try:
            if not _is_channels_last(layer):
                ctx.barrier(f"{name!r} ({ctx.kind}) uses data_format={layer.data_format!r}; only channels_last "
                            f"is supported")
            if rule is None:
                ctx.barrier(f"{name!r} ({ctx.kind}) is a layer type the pruning engine does not understand "
                            f"(tff_prune.pruning.register_layer_rule teaches it one)")
            rule(ctx)
        except _Barrier as b:
            reason = str(b)
            barriers[name] = reason
            block(ins + [name], f"barrier {reason}")
            continue
        for i, in_pos, out_pos in ctx.couplings:
            base_in, base_out = offsets[ins[i]], offsets[name]
            for p, q in zip(in_pos.tolist(), out_pos.tolist()):
                uf.union(base_in + p, base_out + q)
        for i, positions in ctx.ties:
            base = offsets[name if i is None else ins[i]]
            for p in positions[1:].tolist():
                uf.union(base + int(positions[0]), base + p)
        for i in ctx.consumed:
            consumers.setdefault(ins[i], []).append(name)
            bad = np.flatnonzero(~zero[ins[i]])
            for p in bad.tolist():
                unsafe.setdefault(offsets[ins[i]] + p,
                                  f"{name!r} reads channels of {ins[i]!r} that are not 0 when removed "
                                  f"({cause.get(ins[i], 'unknown cause')})")
        if ctx.weighted:
            weighted.add(name)
        if ctx.blocked:
            block([name], ctx.blocked)
        # Zero analysis of the output.
        out_zero = np.zeros(channels[name], dtype=bool)
        if ctx.produced is not None:
            producers.add(name)
            out_zero[:] = ctx.produced
            if not ctx.produced:
                cause[name] = ctx.nonzero_cause
        elif ctx.zero_law == "reset":
            out_zero[:] = True
        elif ctx.zero_law == "nonzero":
            cause[name] = ctx.nonzero_cause
        else:
            law_any = ctx.zero_law == "any"
            out_zero[:] = not law_any
            covered = np.zeros(channels[name], dtype=bool)
            for i, in_pos, out_pos in ctx.couplings:
                vals = zero[ins[i]][in_pos]
                if law_any:
                    out_zero[out_pos] |= vals
                else:
                    out_zero[out_pos] &= vals
                covered[out_pos] = True
            out_zero &= covered
            if not out_zero.all():
                cause[name] = next((cause[t] for t in ins if t in cause), "")
        zero[name] = out_zero

    # Coupled channels (components) and their tensors.
    roots = np.array([uf.find(i) for i in range(total)], dtype=np.int64)
    comp_ids, comp_of_pos = np.unique(roots, return_inverse=True)
    comp_of = {t: comp_of_pos[offsets[t]:offsets[t] + c] for t, c in channels.items()}
    comp_unsafe: dict[int, str] = {}
    for p, reason in unsafe.items():
        comp_unsafe.setdefault(int(comp_of_pos[p]), reason)
    comp_tensors: list[list] = [[] for _ in comp_ids]
    for t, comps in comp_of.items():
        for comp in np.unique(comps).tolist():
            comp_tensors[comp].append(t)
    order = {e.name: i for i, e in enumerate(entries)}
    signatures: dict[tuple, list[int]] = {}
    for comp, ts in enumerate(comp_tensors):
        signatures.setdefault(tuple(ts), []).append(comp)  # tensors were visited in model order

    comp_group = np.zeros(len(comp_ids), dtype=np.int64)
    comp_canonical = np.zeros(len(comp_ids), dtype=np.int64)
    raw = []
    for sig, comps in signatures.items():
        root = sig[0]
        first = {}
        root_comps = comp_of[root]
        for pos_, comp in enumerate(root_comps.tolist()):
            first.setdefault(comp, pos_)
        comps = sorted(comps, key=first.__getitem__)
        reason = ""
        prods = tuple(t for t in sig if t in producers)
        blocked_by = [blocked[t] for t in sig if t in blocked]
        unsafe_by = [comp_unsafe[c] for c in comps if c in comp_unsafe]
        if blocked_by:
            reason = blocked_by[0]
        elif unsafe_by:
            reason = unsafe_by[0]
        elif not prods:
            reason = "no layer produces these channels"
        chw = tuple(t for t in sig if t in weighted and t not in producers)
        cons = tuple(dict.fromkeys(c for t in sig for c in consumers.get(t, [])))
        members = set(prods) | set(chw) | set(cons)
        producer_positions = {}
        comp_rank = {comp: k for k, comp in enumerate(comps)}
        for p in prods:
            pc = comp_of[p]
            where = [[] for _ in comps]
            for pos_, comp in enumerate(pc.tolist()):
                if comp in comp_rank:
                    where[comp_rank[comp]].append(pos_)
            counts = {len(w) for w in where}
            if len(counts) != 1:
                reason = reason or f"channels occupy unequal numbers of filters of {p!r}"
                where = [w[:1] for w in where]
            producer_positions[p] = np.asarray(where, dtype=np.int64)
        raw.append((comps, dict(channels=len(comps), producers=prods, channel_wise=chw, consumers=cons,
                                layers=tuple(sorted(members, key=order.__getitem__)),
                                tensors=tuple(t for t in sig if t != "__input__"), prunable=not reason,
                                reason=reason,
                                producer_index={p: v[:, 0].copy() for p, v in producer_positions.items()},
                                producer_positions=producer_positions), order[sig[0]]))
    raw.sort(key=lambda r: (not r[1]["prunable"], r[2]))
    groups = []
    for gid, (comps, fields, _) in enumerate(raw):
        for k, comp in enumerate(comps):
            comp_group[comp], comp_canonical[comp] = gid, k
        groups.append(DependencyGroup(id=gid, **fields))
    layer_inputs = {e.name: list(e.inputs) for e in entries}
    leaves = {e.name: e.layer for e in entries if e.layer is not None and not e.is_input}
    return DependencyGraph(groups, barriers, layer_inputs, channels, comp_of, comp_group, comp_canonical, leaves)


def barriers(model: tf.keras.Model) -> dict[str, str]:
    """Layers that block pruning, mapped to the reason (human-readable)."""
    return dependency_graph(model).barriers


def coverage(model: tf.keras.Model, graph: Optional[DependencyGraph] = None) -> float:
    """Share of the output channels of Conv2D / SeparableConv2D / Dense layers that lie in prunable groups.

    Producers of the model's outputs (the class scores, also through Flatten/Softmax, e.g.
    MobileNetV3's ``Logits`` conv) are left out of both counts: they are never pruned.

    Returns:
      a float in [0, 1] (1.0 when there is nothing to count).
    """
    graph = graph or dependency_graph(model)
    outputs = output_layer_names(model)
    prunable = {t for g in graph.groups if g.prunable for t in g.tensors}
    to_output = {t for g in graph.groups if set(g.tensors) & outputs for t in g.tensors}
    total = covered = 0
    for name, layer in graph.layers.items():
        if type(layer) in PRODUCERS and name not in outputs and name not in to_output:
            total += graph.channels[name]
            covered += graph.channels[name] if name in prunable else 0
    return covered / total if total else 1.0
