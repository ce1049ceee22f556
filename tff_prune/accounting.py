"""Parameters, FLOPs and communication bytes: the single source of these numbers.

FLOPs follow the TensorFlow profiler's convention (``tf.compat.v1.profiler`` with
``ProfileOptionBuilder.float_operation()`` on the frozen inference graph, batch 1),
which is what the paper's notebooks report. A multiply-accumulate counts as 2 FLOPs
(FLOPs = 2 x MACs for Conv2D and MatMul). Per op, as registered in TF's
``RegisterStatistics(..., "flops")``:

- Conv2D: ``2 * H_out * W_out * kh * kw * C_in * C_out``; BiasAdd: output elements.
- DepthwiseConv2dNative: ``2 * H_out * W_out * kh * kw * C_in * multiplier``.
- MatMul (Dense): ``2 * in * out``; BiasAdd: ``out``.
- MaxPool / AvgPool: output elements x pool window area.
- Mean (GlobalAveragePooling2D): input elements.
- Softmax: ``5 * n``. ReLU, reshapes, dropout and the input: 0.

The full FEMNIST CNN gives 7,529,588 FLOPs per example (checked against the profiler
in the tests).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

L = tf.keras.layers
BYTES_PER_FLOAT32 = 4
_ZERO_FLOP = (L.InputLayer, L.ReLU, L.Flatten, L.Reshape, L.Dropout, L.SpatialDropout2D,
              L.GaussianNoise, L.GaussianDropout, L.ZeroPadding2D, L.Cropping2D)


def count_params(model: tf.keras.Model) -> int:
    """Total parameters (trainable + non-trainable) of ``model``."""
    return int(model.count_params())


def count_trainable_params(model: tf.keras.Model) -> int:
    """Trainable parameters of ``model``."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


def _elements(shape) -> int:
    return int(np.prod([d for d in shape[1:]]))


def _activation_flops(activation, n: int) -> int:
    name = getattr(activation, "__name__", str(activation))
    if name in ("linear", "relu"):
        return 0
    if name == "softmax":
        return 5 * n
    raise ValueError(f"FLOPs of activation {name!r} are not accounted; add it to tff_prune.accounting")


def layer_flops(model: tf.keras.Model) -> dict[str, int]:
    """FLOPs per example (batch 1) of each layer, TF-profiler convention (module docstring).

    Returns:
      dict from layer name to FLOPs (int), in model layer order.

    Raises:
      ValueError: a layer type or activation whose FLOPs are not accounted.
    """
    out = {}
    for layer in model.layers:
        n_out = _elements(layer.output_shape) if not isinstance(layer, L.InputLayer) else 0
        if isinstance(layer, L.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            flops = 2 * n_out * kh * kw
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif type(layer) is L.Conv2D:
            kh, kw = layer.kernel_size
            c_in = layer.input_shape[-1] // layer.groups
            flops = 2 * n_out * kh * kw * c_in
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif type(layer) is L.Dense:
            flops = 2 * layer.input_shape[-1] * layer.units
            flops += layer.units if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            flops = n_out * int(np.prod(layer.pool_size))
        elif isinstance(layer, L.GlobalAveragePooling2D):
            flops = _elements(layer.input_shape)
        elif isinstance(layer, L.Softmax):
            flops = 5 * n_out
        elif isinstance(layer, L.Activation):
            flops = _activation_flops(layer.activation, n_out)
        elif isinstance(layer, _ZERO_FLOP):
            flops = 0
        else:
            raise ValueError(f"FLOPs of layer {layer.name!r} ({type(layer).__name__}) are not accounted; "
                             f"add it to tff_prune.accounting")
        out[layer.name] = int(flops)
    return out


def count_flops(model: tf.keras.Model) -> int:
    """FLOPs per example of one forward pass (TF-profiler convention; FLOPs = 2 x MACs)."""
    return int(sum(layer_flops(model).values()))


def conv_widths(model: tf.keras.Model) -> dict[str, int]:
    """Filters of every Conv2D layer, by name, in model order."""
    return {layer.name: int(layer.filters) for layer in model.layers if type(layer) is L.Conv2D}


def round_bytes(model: tf.keras.Model, clients: int, uploaded_params: int | None = None) -> dict[str, int]:
    """Bytes moved in one FedAvg round with ``clients`` participants (float32 weights).

    Server->clients: every model weight (trainable and non-trainable) to each client.
    Clients->server: each client's update of the trainable weights (TFF's FedAvg
    aggregates trainable weights only), or of ``uploaded_params`` values if given (QAT
    models also upload their quantization ranges). Protocol overhead is not counted.

    Returns:
      dict with ``bytes_down`` and ``bytes_up`` (bytes, int).
    """
    return {"bytes_down": BYTES_PER_FLOAT32 * count_params(model) * clients,
            "bytes_up": BYTES_PER_FLOAT32 * (count_trainable_params(model) if uploaded_params is None
                                             else int(uploaded_params)) * clients}


def summarize(model: tf.keras.Model) -> Mapping[str, object]:
    """Parameters, FLOPs and conv widths of ``model`` in one dict."""
    return {"params": count_params(model), "flops": count_flops(model), "widths": conv_widths(model)}
