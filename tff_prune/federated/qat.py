"""Quantization-aware training (QAT) inside TFF with tensorflow-model-optimization.

``tfmot.quantization.keras.quantize_model`` wraps each layer with fake-quantization.
Its quantization ranges (``*_min`` / ``*_max`` of activations, inputs and weights) are
*non-trainable* Keras variables updated by assignment during training (moving averages
for activations, last value for weights). TFF's FedAvg sends clients' updates of the
trainable weights only, so in a plain ``build_weighted_fed_avg`` the server's ranges never
move from their initial values (measured: all stay at ±6). ``tff_prune.federated.variables``
reports the range variables as trainable, so each client's range change travels in its model
delta and FedAvg averages them like weights (weighted by examples). They get no gradient
(TFF's optimizers leave a weight with a ``None`` gradient unchanged), so the clients' own
range updates are what is averaged.

The server holds no data, so all QAT happens on the clients; the final int8 TFLite model
is converted from the QAT model's ranges without a representative dataset.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot



def _is_quant_layer(layer) -> bool:
    # QuantizeLayer (the input quantizer) is not exported by tfmot's public API: match by class name.
    return isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) or type(layer).__name__ == "QuantizeLayer"


def quantize(model: tf.keras.Model) -> tf.keras.Model:
    """``tfmot.quantization.keras.quantize_model`` of ``model`` (weights carried over, default 8-bit scheme)."""
    return tfmot.quantization.keras.quantize_model(model)


def quantize_scope():
    """Context manager needed to deserialize QAT models (``model_from_json``, ``load_model``)."""
    return tfmot.quantization.keras.quantize_scope()


def is_qat_model(model: tf.keras.Model) -> bool:
    """True if ``model`` contains tfmot quantize wrappers."""
    return any(_is_quant_layer(layer) for layer in model.layers)


def is_range(layer, variable) -> bool:
    """True if ``variable`` of ``layer`` is a tfmot quantization range (``*_min`` / ``*_max``)."""
    name = variable.name.split("/")[-1].split(":")[0]
    return _is_quant_layer(layer) and (name.endswith("_min") or name.endswith("_max"))


def strip_quantization(qat_model: tf.keras.Model, float_model: tf.keras.Model) -> tf.keras.Model:
    """Copies a QAT model's float weights into ``float_model`` (same architecture, no fake-quant).

    ``float_model`` is modified in place and returned. The wrapped layers keep their
    variables' names (``conv1/kernel:0``), so weights are matched by variable name.

    Raises:
      ValueError: a variable of ``float_model`` has no counterpart in the QAT model.
    """
    qat_vars = {v.name: v for v in qat_model.weights}
    for v in float_model.weights:
        if v.name not in qat_vars:
            raise ValueError(f"variable {v.name!r} has no counterpart in the QAT model")
        v.assign(qat_vars[v.name])
    return float_model
