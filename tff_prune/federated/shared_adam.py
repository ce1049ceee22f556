"""FedAvg whose clients continue one Adam state the server holds (``--client-optimizer shared_adam``).

Why: TFF's ``build_weighted_fed_avg`` gives every client a *fresh* Adam state each round
(``tff.learning.templates.build_model_delta_client_work``). Adam's first steps then move every weight by about the
learning rate whatever the gradient's size, and a client holding one class only (231 of the 248 CelebA training
celebrities for ``male``) walks far towards predicting its class; the average of such models stays at the majority
rate. The authors' loop (arXiv 2411.01759) compiles one Keras client model per round and trains the round's clients
one after the other, so Adam's moments and step count run on from client to client and are reset each round: the
second moment then reflects many clients' gradients, and a client's small gradients give small steps.

Clients train in parallel in a federated round, so a sequential state cannot be had; this module keeps what matters of
it, the way FedCAda (Zhou et al. 2024, arXiv 2405.11811) does: the server holds Adam's first and second moments and
step count; each round they are broadcast, every client *continues* them through its local steps
(``tff.learning.optimizers.build_adam``'s ``next``, state updated every step), and the server sets the new state to
the example-weighted mean of the clients' final moments, the step count advanced by the mean number of local steps.
Differences from the authors' loop: the state is averaged rather than handed on, and it carries across rounds instead
of restarting at every round.

Built from TFF's own parts: a ``tff.learning.templates.ClientWorkProcess`` (structure of TFF's MIME-lite client work,
``tff.learning.algorithms.build_weighted_mime_lite``, whose clients use the server's Adam state *frozen*), composed
with ``build_broadcast_process``, ``tff.aggregators.MeanFactory`` and ``build_apply_optimizer_finalizer`` by
``tff.learning.templates.compose_learning_process``. The client work's state is the Adam state; its layout is the
one ``build_adam`` gives (``learning_rate, beta_1, beta_2, epsilon, step, accumulator, preconditioner``).
"""

from __future__ import annotations

import collections
import logging
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_prune.federated.variables import tff_variable_split

_LOG = logging.getLogger(__name__)

ACCUMULATOR, PRECONDITIONER, STEP = "accumulator", "preconditioner", "step"


def _client_update(model_fn: Callable[[], tff.learning.models.VariableModel], optimizer):
    """The ``tf.function`` one client runs: local steps continuing ``optimizer_state``."""
    model = model_fn()

    @tf.function
    def client_update(optimizer_state, initial_weights, data):
        weights = tff.learning.models.ModelWeights.from_model(model)
        tf.nest.map_structure(lambda v, t: v.assign(t), weights, initial_weights)
        trainable = tuple(tf.nest.flatten(weights.trainable))

        def reduce_fn(carry, batch):
            num_examples, steps, state = carry
            with tf.GradientTape() as tape:
                output = model.forward_pass(batch, training=True)
            gradients = tuple(tf.nest.flatten(tape.gradient(output.loss, weights.trainable)))
            state, updated = optimizer.next(state, trainable, gradients)
            for v, t in zip(trainable, updated):
                v.assign(t)
            if output.num_examples is None:
                num_examples += tf.shape(output.predictions, out_type=tf.int64)[0]
            else:
                num_examples += tf.cast(output.num_examples, tf.int64)
            return num_examples, steps + 1.0, state

        num_examples, steps, final_state = data.reduce(
            (tf.constant(0, tf.int64), tf.constant(0.0, tf.float32), optimizer_state), reduce_fn)
        delta = tf.nest.map_structure(tf.subtract, initial_weights.trainable, weights.trainable)
        flat = tf.nest.flatten(delta)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(d)) for d in flat])
        delta = tf.nest.map_structure(lambda d: tf.where(finite, d, tf.zeros_like(d)), delta)
        weight = tf.where(finite, tf.cast(num_examples, tf.float32), 0.0)
        moments = collections.OrderedDict([
            (ACCUMULATOR, final_state[ACCUMULATOR]), (PRECONDITIONER, final_state[PRECONDITIONER]), (STEP, steps)])
        # a client whose training diverged sends zeros with weight 0 (as TFF's model-delta client work does)
        moments = tf.nest.map_structure(lambda m: tf.where(finite, m, tf.zeros_like(m)), moments)
        result = tff.learning.templates.ClientResult(update=delta, update_weight=weight)
        return result, model.report_local_unfinalized_metrics(), moments

    return client_update


def build_shared_adam_client_work(model_fn: Callable[[], tff.learning.models.VariableModel], learning_rate: float,
                                  beta_1: float = 0.9, beta_2: float = 0.999,
                                  epsilon: float = 1e-7) -> tff.learning.templates.ClientWorkProcess:
    """A ``ClientWorkProcess`` whose clients continue a server-held Adam state (see the module docstring).

    Args:
      model_fn: TFF's no-argument model constructor (a new ``tff.learning.models.VariableModel`` per call).
      learning_rate, beta_1, beta_2, epsilon: Adam's (``tff.learning.optimizers.build_adam``; paper: lr 1e-3).

    Returns:
      the process; its state (at the server) is ``build_adam``'s state for the model's trainable tensors, all moments
      zero and step 0 at ``initialize``. ``next`` returns per-client ``ClientResult(update=initial - final trainable
      weights, update_weight=examples)`` (weight 0 and a zero update for a client whose update is not finite) and
      ``measurements = {"train": summed-then-finalized training metrics}``, as FedAvg's client work does.
    """
    optimizer = tff.learning.optimizers.build_adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                                                   epsilon=epsilon)
    with tf.Graph().as_default():
        model = model_fn()
        metrics_aggregation = tff.learning.metrics.sum_then_finalize(model.metric_finalizers())
        weights_type = tff.learning.models.weights_type_from_model(model)
        data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
    specs = tuple(tf.nest.flatten(tff.types.type_to_tf_tensor_specs(weights_type.trainable)))

    @tff.tensorflow.computation
    def initial_state():
        return optimizer.initialize(specs)

    state_type = initial_state.type_signature.result

    @tff.federated_computation
    def init_fn():
        return tff.federated_eval(initial_state, tff.SERVER)

    @tff.tensorflow.computation(state_type, weights_type, data_type)
    def client_update(state, weights, data):
        return _client_update(model_fn, optimizer)(state, weights, data)

    moments_type = client_update.type_signature.result[2]

    @tff.tensorflow.computation(state_type, moments_type)
    def merge(state, moments):
        new = collections.OrderedDict(state)
        new[ACCUMULATOR] = moments[ACCUMULATOR]
        new[PRECONDITIONER] = moments[PRECONDITIONER]
        new[STEP] = state[STEP] + tf.cast(tf.round(moments[STEP]), state[STEP].dtype)
        return new

    @tff.federated_computation(tff.FederatedType(state_type, tff.SERVER),
                               tff.FederatedType(weights_type, tff.CLIENTS),
                               tff.FederatedType(data_type, tff.CLIENTS))
    def next_fn(state, weights, client_data):
        at_clients = tff.federated_broadcast(state)
        result, outputs, moments = tff.federated_map(client_update, (at_clients, weights, client_data))
        mean_moments = tff.federated_mean(moments, weight=result.update_weight)
        new_state = tff.federated_map(merge, (state, mean_moments))
        measurements = tff.federated_zip(collections.OrderedDict(train=metrics_aggregation(outputs)))
        return tff.templates.MeasuredProcessOutput(new_state, result, measurements)

    return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_shared_adam_fed_avg(model_fn: Callable[[], tff.learning.models.VariableModel], client_lr: float,
                              server_optimizer: tff.learning.optimizers.Optimizer
                              ) -> tff.learning.templates.LearningProcess:
    """FedAvg (example-weighted mean of the client deltas, then ``server_optimizer``) with shared-Adam clients.

    The same composition as ``tff.learning.algorithms.build_weighted_fed_avg`` (broadcast, client work,
    ``MeanFactory``, apply-optimizer finalizer), with :func:`build_shared_adam_client_work` as the client work, so
    ``state.client_work`` is the shared Adam state and ``metrics["client_work"]["train"]`` the training metrics.
    """

    @tff.tensorflow.computation
    def initial_model_weights_fn():
        return tff.learning.models.ModelWeights.from_model(model_fn())

    weights_type = initial_model_weights_fn.type_signature.result
    aggregator = tff.aggregators.MeanFactory().create(weights_type.trainable, tff.TensorType(np.float32))
    return tff.learning.templates.compose_learning_process(
        initial_model_weights_fn,
        tff.learning.templates.build_broadcast_process(weights_type),
        build_shared_adam_client_work(model_fn, client_lr),
        aggregator,
        tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer, weights_type))


def client_optimizer_state(state) -> list[np.ndarray]:
    """The client work's state of a process state (``state.client_work``, flattened) as numpy arrays.

    Empty for TFF's FedAvg with a per-client optimizer (its client work holds only hyperparameters, which the
    configuration rebuilds); for ``shared_adam``: the learning rate, betas, epsilon, step and both moments.
    """
    return [np.asarray(x) for x in tf.nest.flatten(state.client_work)] if _is_shared(state) else []


def _is_shared(state) -> bool:
    cw = state.client_work
    return hasattr(cw, "keys") and ACCUMULATOR in cw.keys()


def with_client_optimizer_state(state, arrays: Sequence[np.ndarray]):
    """``state`` with its client work state replaced by ``arrays`` (from :func:`client_optimizer_state`).

    Raises:
      ValueError: ``arrays`` does not fit the state (another client optimizer or architecture).
    """
    client_work = tf.nest.pack_sequence_as(state.client_work, list(arrays))
    for old, new in zip(tf.nest.flatten(state.client_work), tf.nest.flatten(client_work)):
        if np.shape(old) != np.shape(new):
            raise ValueError(f"client optimizer state of shape {np.shape(new)} does not fit {np.shape(old)}")
    return state._replace(client_work=client_work)  # LearningAlgorithmState is a NamedTuple


def carry_client_optimizer_state(old_state, old_model: tf.keras.Model, new_state,
                                 carry: Callable[[tf.keras.Model], tf.keras.Model]) -> Optional[object]:
    """The shared Adam state of ``old_state`` moved to a pruned architecture, channel by channel.

    Each moment (one tensor per trainable variable of ``old_model``, in TFF's order, ``tff_variable_split``) is written
    into a copy of ``old_model``; ``carry`` (the step's own surgery, e.g. ``prune_model(m, plan, weights="inherit")``)
    turns that copy into the new architecture, and its variables are the new moments. The step count carries.

    Returns:
      ``new_state`` with the carried client work state, or None when the states hold no shared Adam state or the
      carried shapes do not fit ``new_state``'s (the new process then starts from fresh moments; a WARNING says so).
    """
    if not (_is_shared(old_state) and _is_shared(new_state)):
        return None
    cw = collections.OrderedDict(old_state.client_work)
    copy = tf.keras.models.clone_model(old_model)
    new_cw = collections.OrderedDict(new_state.client_work)
    for key in (ACCUMULATOR, PRECONDITIONER):
        variables = tff_variable_split(copy)[0]
        if len(variables) != len(cw[key]):
            _LOG.warning("shared_adam: %d moments for %d trainable variables; the new architecture starts from "
                         "fresh Adam moments", len(cw[key]), len(variables))
            return None
        for v, m in zip(variables, cw[key]):
            v.assign(np.asarray(m))
        carried = [v.numpy() for v in tff_variable_split(carry(copy))[0]]
        if [c.shape for c in carried] != [np.shape(t) for t in new_cw[key]]:
            _LOG.warning("shared_adam: the carried moments' shapes do not fit the new architecture; it starts from "
                         "fresh Adam moments")
            return None
        new_cw[key] = tuple(carried)
    new_cw[STEP] = cw[STEP]
    return new_state._replace(client_work=new_cw)
