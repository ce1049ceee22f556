"""Which Keras variables TFF's FedAvg averages, and how non-trainable state gets averaged too.

``tff.learning.algorithms.build_weighted_fed_avg`` sends clients' updates of the model's
*trainable* variables only; the server's non-trainable variables never change. Two kinds of
non-trainable state must move, though:

- BatchNormalization moving mean and variance (also under tfmot's pruning or quantization
  wrappers): updated by assignment in every training step on the clients; left alone, the
  server's inference statistics stay at their initial 0 / 1 and a BN network evaluates badly
  however well it trains.
- tfmot quantization ranges of a QAT model (``*_min`` / ``*_max``), see ``qat.py``.

:class:`AveragedStateModel` reports those variables as trainable to TFF. They receive no
gradient (TFF's optimizers leave a weight with a ``None`` gradient unchanged, e.g.
``tff.learning.optimizers.build_adam``), so each client's delta for them is exactly its
assignments during local training, and FedAvg averages them weighted by examples, like the
weights. With server learning rate 1.0 the server's statistics are the example-weighted
mean of the clients' final statistics.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_federated as tff

from tff_prune.federated.qat import is_range

L = tf.keras.layers


def _inner(layer):
    """The layer under tfmot wrappers (``PruneLowMagnitude``, ``QuantizeWrapper``: both keep it as ``.layer``)."""
    while isinstance(getattr(layer, "layer", None), tf.keras.layers.Layer):
        layer = layer.layer
    return layer


def _averaged_state(model: tf.keras.Model) -> set[int]:
    ids = set()
    for layer in model.layers:
        is_bn = isinstance(_inner(layer), L.BatchNormalization)
        for v in layer.non_trainable_weights:
            name = v.name.split("/")[-1].split(":")[0]
            if is_range(layer, v) or (is_bn and name in ("moving_mean", "moving_variance")):
                ids.add(id(v))
    return ids


def tff_variable_split(model: tf.keras.Model) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, non-trainable) variables as TFF sees ``model``.

    Keras' ``trainable_weights``, then the averaged state (BatchNormalization moving
    statistics, QAT ranges) in model order; the rest of ``non_trainable_weights`` stays
    non-trainable. For models without such state this is exactly Keras' split.
    """
    state = _averaged_state(model)
    trainable = list(model.trainable_weights) + [v for v in model.non_trainable_weights if id(v) in state]
    non_trainable = [v for v in model.non_trainable_weights if id(v) not in state]
    return trainable, non_trainable


def needs_wrapper(model: tf.keras.Model) -> bool:
    """True if ``model`` has state FedAvg would otherwise not average."""
    return bool(_averaged_state(model))


class AveragedStateModel(tff.learning.models.VariableModel):
    """A TFF model that delegates to ``from_keras_model`` but reports averaged state as trainable."""

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
