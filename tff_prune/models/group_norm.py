"""GroupNorm: Keras' GroupNormalization with a call that converts to TFLite.

Keras 2.14's ``tf.keras.layers.GroupNormalization`` computes its statistics with
``tf.nn.weighted_moments`` over a mask of ones; the TFLite converter turns that into a
``BROADCAST_TO`` that fails to prepare in the interpreter ("Output shape must be broadcastable
from input shape"), for any batch size. :class:`GroupNorm` computes the same statistics with
``tf.nn.moments`` when no mask is given (bit-identical outputs in Keras, measured) and keeps
the parent's config and weights (``gamma``, ``beta``, shape ``(C,)``), so models saved with it
load with ``tff_prune.models`` imported (registered as ``tff_prune>GroupNorm``).

Importing this module registers it with the engine as a GroupNormalization (whole groups go,
:mod:`tff_prune.pruning.graph`; the same slicer) and with the FLOPs accounting: the TF profiler
counts its ops (``Mean``, ``SquaredDifference``, ``Mean``, then ``batch_normalization``'s
``Rsqrt``/``Mul``/``Sub``/``Add`` on the ``(N, H, W, G, C/G)`` reshape; measured in the tests) as
``6 * E`` plus ``3 * C + 3 * G`` with gamma and beta, ``2 * C + 4 * G`` with gamma only,
``C + 4 * G`` with beta only, ``5 * G`` with neither (E: output elements, C channels, G groups).
"""

from __future__ import annotations

import tensorflow as tf

from tff_prune import accounting
from tff_prune.pruning import graph, slicing


@tf.keras.utils.register_keras_serializable(package="tff_prune")
class GroupNorm(tf.keras.layers.GroupNormalization):
    """Group normalization (Wu & He, ECCV 2018) over ``groups`` groups of the last axis.

    Input and output: float32 ``(batch, ..., C)``, ``C`` a multiple of ``groups``. Each group of
    ``C / groups`` consecutive channels of one example is normalized by its mean and variance over
    the spatial axes and the group's channels, then scaled by ``gamma`` and shifted by ``beta``.
    Only ``axis=-1`` takes the TFLite-friendly path; other axes and masked calls use Keras' code.
    """

    def call(self, inputs, mask=None):
        rank = inputs.shape.rank
        if mask is not None or self.axis not in (-1, rank - 1):
            return super().call(inputs, mask=mask)
        shape = tf.shape(inputs)
        channels = int(inputs.shape[-1])
        grouped = tf.reshape(inputs, tf.concat([shape[:-1], [self.groups, channels // self.groups]], axis=0))
        # grouped: (batch, *spatial, groups, C / groups); statistics over spatial and the group's channels.
        axes = list(range(1, rank - 1)) + [rank]
        mean, variance = tf.nn.moments(grouped, axes=axes, keepdims=True)
        gamma, beta = self._get_reshaped_weights(shape)
        out = tf.nn.batch_normalization(grouped, mean, variance, beta, gamma, self.epsilon)
        return tf.reshape(out, shape)


def group_norm_flops(layer: GroupNorm) -> int:
    """FLOPs per example of a :class:`GroupNorm` on a 4-D input, TF-profiler convention (module docstring).

    Raises:
      ValueError: an input that is not ``(batch, H, W, C)``.
    """
    shape = layer.output_shape
    if len(shape) != 4:
        raise ValueError(f"FLOPs of {layer.name!r} (GroupNorm) are accounted on 4-D inputs only, got {shape}")
    c, g = int(shape[-1]), int(layer.groups)
    extra = {(True, True): 3 * c + 3 * g, (True, False): 2 * c + 4 * g, (False, True): c + 4 * g,
             (False, False): 5 * g}[(bool(layer.scale), bool(layer.center))]
    return 6 * int(shape[1]) * int(shape[2]) * c + extra


graph.register_layer_rule(GroupNorm, graph.LAYER_RULES[tf.keras.layers.GroupNormalization])
slicing.register_layer_slicer(GroupNorm, *slicing.SLICERS[tf.keras.layers.GroupNormalization])
accounting.register_layer_flops(GroupNorm, group_norm_flops)
