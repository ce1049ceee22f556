"""Parameters, FLOPs and communication bytes: the single source of these numbers.

FLOPs follow the TensorFlow profiler's convention (``tf.compat.v1.profiler`` with
``ProfileOptionBuilder.float_operation()`` on the frozen inference graph, batch 1),
which is what the paper's notebooks report. A multiply-accumulate counts as 2 FLOPs
(FLOPs = 2 x MACs for Conv2D and MatMul). Per op, as registered in TF's
``RegisterStatistics(..., "flops")``:

- Conv2D: ``2 * H_out * W_out * kh * kw * C_in * C_out``; BiasAdd: output elements.
- DepthwiseConv2dNative: ``2 * H_out * W_out * kh * kw * C_in * multiplier``.
- MatMul (Dense): ``2 * in * out``; BiasAdd: ``out``.
- SeparableConv2D: its depthwise part plus ``2 * H_out * W_out * C_in * multiplier * C_out`` plus BiasAdd.
- MaxPool / AvgPool: output elements x pool window area; GlobalMaxPool: 0.
- Mean (GlobalAveragePooling2D): input elements.
- BatchNormalization (inference): 0 on 4-D inputs (one FusedBatchNormV3, no registered count);
  on 2-D inputs the unfused ops: ``8 * C`` (``7 * C`` without gamma).
- GroupNormalization on 4-D inputs (``tf.nn.weighted_moments`` then ``tf.nn.batch_normalization`` on
  the ``(N, H, W, G, C/G)`` reshape), as the profiler counts it (measured, tests): ``10 * E`` plus
  ``3 * C`` (gamma and beta), ``2 * C + G`` (gamma only), ``C + G`` (beta only) or ``2 * G`` (neither).
- Add / Multiply / Maximum / Minimum of n inputs: ``(n - 1) * E`` (E = output elements);
  Subtract: ``E``; Average: ``n * E``; Concatenate: 0.
- Activations: relu, relu6, elu, selu, tanh, sigmoid, softsign, leaky ReLU: 0; swish/silu ``2 * E``;
  gelu ``4 * E``; mish ``E``; softmax ``5 * E``; PReLU ``3 * E + alpha size``; ThresholdedReLU ``2 * E``.
- Reshapes, padding, cropping, dropout and the input: 0; UpSampling2D: 2 (the profiler counts
  the shape product of the resize).
- Dense on an N-D input (``(..., in) -> (..., units)``, a pointwise layer): ``2 * rows * in * units``
  plus the BiasAdd's output elements, with ``rows`` the product of the leading dimensions.
- Rescaling: ``2 * E`` (a Mul and an Add, also with offset 0). Normalization: ``2 * E + C``
  (Sub, RealDiv, and a Maximum on the ``C`` standard deviations).
- TF ops (``TFOpLambda``, e.g. ``x + 3``, ``x * (1/6)``, ``x + y``): add/subtract/multiply/divide/
  maximum/minimum ``E``; relu, relu6, sigmoid, tanh, identity: 0.
- hard_sigmoid activation: ``4 * E``. LayerNormalization on the last axis: with epsilon >= 1.001e-5
  Keras fuses it (FusedBatchNormV3, 0) and adds ``E`` each for the scale and the offset; with a
  smaller epsilon (ConvNeXt's 1e-6) the unfused ops, ``9 * E + 3 * E / C``. ConvNeXt's LayerScale:
  ``E`` (a Mul); StochasticDepth (inference): 0.
- Grouped Conv2D (``groups > 1``): ``2 * H_out * W_out * kh * kw * (C_in / groups) * C_out`` plus
  bias. Keras runs these on CPU as an XLA-compiled function call, which the TF profiler counts as
  0 and whose output shape it cannot see, so it also misses ops downstream of them: on models
  with grouped convolutions (RegNet, ConvNeXt) the profiler undercounts (measured: RegNetX002 at
  64x64 3.8 of our 32.5 MFLOPs; ConvNeXtTiny at 32x32 178.7 of 183.5) and is no reference.

Nested Functional/Sequential models are walked into; their layers are named
``"<nested model>/<layer>"`` in :func:`layer_flops`. A layer type of your own:
:func:`register_layer_flops`.

The full FEMNIST CNN gives 7,529,588 FLOPs per example (checked against the profiler
in the tests).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

L = tf.keras.layers
BYTES_PER_FLOAT32 = 4
# layer class -> fn(layer) -> FLOPs per example; see register_layer_flops.
LAYER_FLOPS: dict[type, Callable[[tf.keras.layers.Layer], int]] = {}
_TF_BINARY = frozenset({"math.add", "__operators__.add", "math.subtract", "__operators__.sub", "math.multiply",
                        "__operators__.mul", "math.truediv", "math.divide", "__operators__.truediv",
                        "math.maximum", "math.minimum"})
_TF_ZERO_FLOP = frozenset({"nn.relu", "nn.relu6", "math.sigmoid", "nn.sigmoid", "math.tanh", "identity"})
_ZERO_FLOP = (L.InputLayer, L.Flatten, L.Reshape, L.Dropout, L.SpatialDropout2D, L.AlphaDropout,
              L.GaussianNoise, L.GaussianDropout, L.ZeroPadding2D, L.Cropping2D, L.Concatenate,
              L.GlobalMaxPooling2D, L.LeakyReLU, L.ELU)
_ACTIVATION_FLOPS_PER_ELEMENT = {"linear": 0, "relu": 0, "relu6": 0, "elu": 0, "selu": 0, "tanh": 0, "sigmoid": 0,
                                 "softsign": 0, "leaky_relu": 0, "swish": 2, "silu": 2, "gelu": 4, "mish": 1,
                                 "softmax": 5, "hard_sigmoid": 4}


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
    if name in _ACTIVATION_FLOPS_PER_ELEMENT:
        return _ACTIVATION_FLOPS_PER_ELEMENT[name] * n
    raise ValueError(f"FLOPs of activation {name!r} are not accounted; add it to tff_prune.accounting")


def register_layer_flops(layer_type: type, flops: Callable[[tf.keras.layers.Layer], int]) -> None:
    """Accounts a layer type of your own: ``flops(layer) -> int`` FLOPs per example (TF-profiler convention)."""
    LAYER_FLOPS[layer_type] = flops


def _leaves(model, prefix: str = ""):
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model) and (isinstance(layer, tf.keras.Sequential)
                                                  or getattr(layer, "_is_graph_network", False)):
            yield from _leaves(layer, prefix + layer.name + "/")
        else:
            yield prefix + layer.name, layer


def _output_shape(layer):
    shape = layer.output_shape
    return shape[0] if isinstance(shape, list) else shape


def _tf_op_flops(layer, n_out: int) -> int:
    symbol = getattr(layer, "symbol", None) or layer.get_config().get("function")
    if symbol in _TF_BINARY:
        return n_out
    if symbol in _TF_ZERO_FLOP:
        return 0
    raise ValueError(f"FLOPs of layer {layer.name!r} (TF op tf.{symbol}) are not accounted; "
                     f"add it to tff_prune.accounting")


def _custom_flops(layer, n_out: int):
    """Keras applications' own layers (ConvNeXt), recognized by class name and module."""
    t = type(layer)
    if not t.__module__.startswith("keras"):
        return None
    if t.__name__ == "LayerScale":
        return n_out
    if t.__name__ == "StochasticDepth":
        return 0
    return None


def layer_flops(model: tf.keras.Model) -> dict[str, int]:
    """FLOPs per example (batch 1) of each layer, TF-profiler convention (module docstring).

    Returns:
      dict from layer name to FLOPs (int), in model layer order; layers of nested models are
      named ``"<nested model>/<layer>"``.

    Raises:
      ValueError: a layer type or activation whose FLOPs are not accounted.
    """
    out = {}
    for name, layer in _leaves(model):
        n_out = _elements(_output_shape(layer)) if not isinstance(layer, L.InputLayer) else 0
        custom = _custom_flops(layer, n_out)
        if type(layer) in LAYER_FLOPS:
            flops = int(LAYER_FLOPS[type(layer)](layer))
        elif custom is not None:
            flops = custom
        elif isinstance(layer, L.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            flops = 2 * n_out * kh * kw
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif type(layer) is L.SeparableConv2D:
            kh, kw = layer.kernel_size
            c_in, m = layer.input_shape[-1], layer.depth_multiplier
            spatial = n_out // layer.filters
            flops = 2 * spatial * kh * kw * c_in * m + 2 * spatial * c_in * m * layer.filters
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif type(layer) is L.Conv2D:
            kh, kw = layer.kernel_size
            c_in = layer.input_shape[-1] // layer.groups
            flops = 2 * n_out * kh * kw * c_in
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif type(layer) is L.Dense:
            rows = n_out // layer.units
            flops = 2 * rows * layer.input_shape[-1] * layer.units
            flops += n_out if layer.use_bias else 0
            flops += _activation_flops(layer.activation, n_out)
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            flops = n_out * int(np.prod(layer.pool_size))
        elif isinstance(layer, L.GlobalAveragePooling2D):
            flops = _elements(layer.input_shape)
        elif isinstance(layer, L.Softmax):
            flops = 5 * n_out
        elif isinstance(layer, L.BatchNormalization):
            rank = len(layer.input_shape)
            flops = 0 if rank == 4 else (8 if layer.scale else 7) * layer.input_shape[-1]
        elif type(layer) is L.GroupNormalization and len(_output_shape(layer)) == 4:
            c, g = int(_output_shape(layer)[-1]), int(layer.groups)
            flops = 10 * n_out + {(True, True): 3 * c, (True, False): 2 * c + g, (False, True): c + g,
                                  (False, False): 2 * g}[(bool(layer.scale), bool(layer.center))]
        elif type(layer) in (L.Add, L.Multiply, L.Maximum, L.Minimum):
            flops = (len(layer.input_shape) - 1) * n_out
        elif type(layer) is L.Subtract:
            flops = n_out
        elif type(layer) is L.Average:
            flops = len(layer.input_shape) * n_out
        elif type(layer) is L.PReLU:
            flops = 3 * n_out + int(np.prod(layer.alpha.shape))
        elif type(layer) is L.ThresholdedReLU:
            flops = 2 * n_out
        elif type(layer) is L.ReLU and not layer.threshold:
            flops = 0
        elif type(layer) is L.UpSampling2D:
            flops = 2
        elif isinstance(layer, L.Activation):
            flops = _activation_flops(layer.activation, n_out)
        elif type(layer) is L.Rescaling:
            flops = 2 * n_out
        elif type(layer) is L.Normalization:
            flops = 2 * n_out + int(_output_shape(layer)[-1])
        elif type(layer) is L.LayerNormalization and list(np.atleast_1d(layer.axis)) in ([-1], [len(
                _output_shape(layer)) - 1]) and (layer.epsilon >= 1.001e-5 or (layer.scale and layer.center)):
            if layer.epsilon >= 1.001e-5:  # Keras runs it as FusedBatchNormV3 (0) + the scale and the offset
                flops = (int(layer.scale) + int(layer.center)) * n_out
            else:  # the unfused ops (ConvNeXt's epsilon 1e-6)
                flops = 9 * n_out + 3 * (n_out // int(_output_shape(layer)[-1]))
        elif type(layer).__name__ == "TFOpLambda":
            flops = _tf_op_flops(layer, n_out)
        elif isinstance(layer, _ZERO_FLOP):
            flops = 0
        else:
            raise ValueError(f"FLOPs of layer {layer.name!r} ({type(layer).__name__}) are not accounted; "
                             f"add it to tff_prune.accounting")
        out[name] = int(flops)
    return out


def count_flops(model: tf.keras.Model) -> int:
    """FLOPs per example of one forward pass (TF-profiler convention; FLOPs = 2 x MACs)."""
    return int(sum(layer_flops(model).values()))


def grouped_conv_flops(model: tf.keras.Model) -> int:
    """FLOPs of the grouped Conv2D layers (``groups > 1``), which the TF profiler counts as 0."""
    flops = layer_flops(model)
    return int(sum(flops[name] for name, layer in _leaves(model) if type(layer) is L.Conv2D and layer.groups > 1))


def conv_widths(model: tf.keras.Model) -> dict[str, int]:
    """Filters of every Conv2D layer, by name (``"<nested model>/<layer>"`` inside nested models), in model order."""
    return {name: int(layer.filters) for name, layer in _leaves(model) if type(layer) is L.Conv2D}


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
