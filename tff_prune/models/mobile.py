"""Mobile CNNs from ``tf.keras.applications`` (weights=None) built for the datasets' input shapes.

- ``mobilenetv2``: MobileNetV2 with width multiplier ``alpha = 0.35`` (inverted residuals,
  depthwise convolutions, ReLU6).
- ``mobilenetv3small``: MobileNetV3Small (squeeze-excitation, hard-swish as TF ops), without
  its built-in Rescaling (the data pipelines already give ``image / 255``).

Both end in ``softmax`` like the paper's models. Their BatchNormalization layers use momentum
:data:`BN_MOMENTUM` (0.9) instead of Keras' 0.999 for these applications: a federated client takes a few local
steps per round (CelebA: about 5), so with 0.999 the moving mean and variance that inference uses stay near their
initial values (0 and 1) for hundreds of rounds (measured on CelebA ``male``, MobileNetV3Small, 20 clients per
round: averaged moving variances 0.92-0.96 after 20 rounds; with 0.9, 0.01-0.47). Training (batch statistics) is
not affected; FedAvg averages the clients' moving statistics (``tff_prune/federated/variables.py``). This alone
does not make CelebA federate: its clients' batches hold one celebrity each (docs/RESULTS.md, "Mobile networks
on CelebA").

``mobilenetv2_gn`` / ``mobilenetv3small_gn`` are the same networks with every
BatchNormalization replaced by GroupNormalization (Wu & He, ECCV 2018; as
:class:`~tff_prune.models.group_norm.GroupNorm`, which converts to TFLite) of
:data:`GN_CHANNELS_PER_GROUP` channels per group (every width of both networks is a multiple of
8), same epsilon. GroupNorm has no batch statistics, so a client whose batches hold one
celebrity normalizes the way the server's evaluation does; Hsieh et al. ("The Non-IID Data
Quagmire of Decentralized Machine Learning", ICML 2020) replace BatchNorm with GroupNorm for
this reason. The engine prunes them by whole groups (:mod:`tff_prune.pruning.graph`), so every
pruned width stays a multiple of 8.

Keras requires at least 32x32 inputs, so
FEMNIST's 28x28 images are zero-padded to 32x32 by a ``ZeroPadding2D`` first layer (part of
the model). Keras applications take no initializer seed: with ``seed``,
``tf.keras.utils.set_random_seed(seed)`` runs before building (it also seeds Python's and
NumPy's global generators), which makes the weights reproducible.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tff_prune.models.group_norm import GroupNorm

MOBILENETV2_ALPHA = 0.35
BN_MOMENTUM = 0.9  # Keras' applications: 0.999 (module docstring)
GN_CHANNELS_PER_GROUP = 8


def _input(shape: tuple[int, int, int]):
    inputs = tf.keras.Input(shape, name="image")
    pad = max(0, 32 - min(shape[0], shape[1]))
    if not pad:
        return inputs, inputs
    return inputs, tf.keras.layers.ZeroPadding2D(((pad // 2, pad - pad // 2),) * 2, name="pad_to_32")(inputs)


def mobilenetv2(num_classes: int, input_shape: tuple[int, int, int], alpha: float = MOBILENETV2_ALPHA,
                seed: Optional[int] = None) -> tf.keras.Model:
    """MobileNetV2 (``alpha``, default 0.35), ``weights=None``, ``num_classes`` softmax outputs.

    Args:
      num_classes: output classes; input_shape: ``(H, W, C)`` of one float32 example.

    Returns:
      a functional ``tf.keras.Model`` mapping ``(batch, H, W, C)`` float32 to ``(batch, num_classes)``
      probabilities.
    """
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    inputs, x = _input(input_shape)
    return _federated_bn(tf.keras.applications.MobileNetV2(input_tensor=x, alpha=alpha, weights=None,
                                                           classes=num_classes, classifier_activation="softmax"))


def mobilenetv3small(num_classes: int, input_shape: tuple[int, int, int],
                     seed: Optional[int] = None) -> tf.keras.Model:
    """MobileNetV3Small (alpha 1.0), ``weights=None``, no built-in Rescaling, ``num_classes`` softmax outputs.

    Returns:
      a functional ``tf.keras.Model`` mapping ``(batch, H, W, C)`` float32 to ``(batch, num_classes)``
      probabilities.
    """
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    inputs, x = _input(input_shape)
    return _federated_bn(tf.keras.applications.MobileNetV3Small(
        input_tensor=x, weights=None, classes=num_classes, include_preprocessing=False,
        classifier_activation="softmax"))


def _federated_bn(model: tf.keras.Model) -> tf.keras.Model:
    """Sets every BatchNormalization's momentum to :data:`BN_MOMENTUM` (read at call time, kept by get_config)."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def with_group_norm(model: tf.keras.Model, channels_per_group: int = GN_CHANNELS_PER_GROUP) -> tf.keras.Model:
    """A new model with every BatchNormalization of ``model`` replaced by a :class:`GroupNorm`.

    Each replacement has ``C / channels_per_group`` groups (``C``: the layer's channels), the
    BatchNormalization's epsilon, name and (with gamma/beta) scale and center; it is rebuilt from
    the Keras config, so the new model's weights are freshly initialised (GroupNormalization's
    gamma 1, beta 0; other layers from their initialisers, reproducible after
    ``tf.keras.utils.set_random_seed``). Nested models are not walked into.

    Raises:
      ValueError: a BatchNormalization that does not normalize the last axis, or whose channel
        count is not a multiple of ``channels_per_group``.
    """
    config = model.get_config()
    layers = {layer.name: layer for layer in model.layers}
    for entry in config["layers"]:
        if entry["class_name"] != "BatchNormalization":
            continue
        layer = layers[entry["config"]["name"]]
        channels = int(layer.gamma.shape[-1] if layer.scale else layer.moving_mean.shape[-1])
        axis = [a % len(layer.input_shape) for a in (layer.axis if isinstance(layer.axis, (list, tuple))
                                                     else [layer.axis])]
        if axis != [len(layer.input_shape) - 1] or channels % channels_per_group:
            raise ValueError(f"{layer.name!r}: cannot use GroupNormalization of {channels_per_group} channels per "
                             f"group on {channels} channels (axis {layer.axis}); pick a divisor of every width")
        entry["class_name"] = "tff_prune>GroupNorm"
        entry["module"] = None
        entry["registered_name"] = "tff_prune>GroupNorm"
        entry["config"] = dict(name=layer.name, trainable=layer.trainable, dtype=entry["config"].get("dtype"),
                               groups=channels // channels_per_group, axis=-1, epsilon=float(layer.epsilon),
                               center=bool(layer.center), scale=bool(layer.scale))
    with tf.keras.utils.custom_object_scope({"tff_prune>GroupNorm": GroupNorm}):
        return model.__class__.from_config(config)
