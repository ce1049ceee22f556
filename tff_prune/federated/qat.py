"""Quantization-aware training (QAT) inside TFF with tensorflow-model-optimization.

``tfmot.quantization.keras.quantize_model`` wraps each layer with fake-quantization.
Its quantization ranges (``*_min`` / ``*_max`` of activations, inputs and weights) are
*non-trainable* Keras variables updated by assignment during training (moving averages
for activations, last value for weights). TFF's FedAvg sends clients' updates of the
trainable weights only, so in a plain ``build_weighted_fed_avg`` the server's ranges never
move from their initial values (measured: all stay at ±6). Here the TFF model reports
the range variables as trainable, so each client's range change travels in its model
delta and FedAvg averages them like weights (weighted by examples). The ranges also
receive the fake-quant op's gradient in the client optimizer step (as in learned-range
QAT); both effects are visible in the ranges the server ends with.

The server holds no data, so all QAT happens on the clients; the final int8 TFLite model
is converted from the QAT model's ranges without a representative dataset.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_federated as tff
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


def _is_range(layer, variable) -> bool:
    name = variable.name.split("/")[-1].split(":")[0]
    return _is_quant_layer(layer) and (name.endswith("_min") or name.endswith("_max"))


def tff_variable_split(model: tf.keras.Model) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, non-trainable) variables as TFF sees ``model``.

    For ordinary models this is Keras' split (``trainable_weights`` then
    ``non_trainable_weights``). For QAT models the quantization range variables move to the
    end of the trainable list (see module docstring); the rest stays non-trainable.
    """
    if not is_qat_model(model):
        return list(model.trainable_weights), list(model.non_trainable_weights)
    ranges = {id(v) for layer in model.layers for v in layer.non_trainable_weights if _is_range(layer, v)}
    trainable = list(model.trainable_weights) + [v for v in model.non_trainable_weights if id(v) in ranges]
    non_trainable = [v for v in model.non_trainable_weights if id(v) not in ranges]
    return trainable, non_trainable


class RangesAsTrainable(tff.learning.models.VariableModel):
    """A TFF model that delegates to ``from_keras_model`` but reports QAT ranges as trainable."""

    def __init__(self, inner: tff.learning.models.VariableModel, keras_model: tf.keras.Model):
        self._inner = inner
        self._trainable, self._non_trainable = tff_variable_split(keras_model)

    @property
    def trainable_variables(self) -> Sequence[tf.Variable]:
        return self._trainable

    @property
    def non_trainable_variables(self) -> Sequence[tf.Variable]:
        return self._non_trainable

    @property
    def local_variables(self):
        return self._inner.local_variables

    @property
    def input_spec(self):
        return self._inner.input_spec

    def forward_pass(self, batch_input, training=True):
        return self._inner.forward_pass(batch_input, training)

    def predict_on_batch(self, batch_input, training=True):
        return self._inner.predict_on_batch(batch_input, training)

    def report_local_unfinalized_metrics(self):
        return self._inner.report_local_unfinalized_metrics()

    def metric_finalizers(self):
        return self._inner.metric_finalizers()

    def reset_metrics(self):
        return self._inner.reset_metrics()


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
