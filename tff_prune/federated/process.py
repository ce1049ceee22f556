"""A TFF FedAvg LearningProcess for one Keras architecture.

TFF processes have fixed tensor shapes, so each pruned architecture gets its own
process (``build_weighted_fed_avg``), and the global weights move between processes
as ``tff.learning.models.ModelWeights`` (order: ``keras_model.weights`` split into
trainable, then non-trainable — not ``get_weights()`` order).
"""

from __future__ import annotations

import os
import signal
import warnings
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_prune.federated.variables import AveragedStateModel, needs_wrapper, tff_variable_split


def _model_fn(model_builder: Callable[[], tf.keras.Model], element_spec) -> Callable[[], tff.learning.models.VariableModel]:
    """TFF's ``model_fn``: a new Keras model wrapped by ``from_keras_model`` (averaged state: ``variables.py``)."""
    def model_fn():
        keras_model = model_builder()
        with warnings.catch_warnings():
            # TFF warns that BatchNormalization statistics are not averaged; AveragedStateModel averages them.
            warnings.filterwarnings("ignore", message="Batch Normalization contains non-trainable variables")
            model = tff.learning.models.from_keras_model(
                keras_model, input_spec=element_spec,
                loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
        return AveragedStateModel(model, keras_model) if needs_wrapper(keras_model) else model

    return model_fn


def build_fed_avg(model_builder: Callable[[], tf.keras.Model], element_spec, client_lr: float,
                  server_lr: float, client_optimizer: str = "adam",
                  server_optimizer: str = "sgd") -> tff.learning.templates.LearningProcess:
    """FedAvg with client Adam (or SGD) and server SGD, clients weighted by example count.

    Args:
      model_builder: returns a *new, uncompiled* Keras model of the architecture. BatchNorm
        moving statistics and tfmot QAT ranges are averaged too (see ``variables.py``).
      element_spec: ``(x, y)`` TensorSpecs of a client batch.
      client_lr: client learning rate (paper: Adam, 1e-3).
      server_lr: server SGD learning rate (1.0 without momentum is plain FedAvg:
        the new global model is the example-weighted mean of client models).
      client_optimizer: ``"adam"`` (``tff.learning.optimizers.build_adam``: every client starts each round
        from fresh moments), ``"sgd"`` (``build_sgdm`` without momentum) or ``"shared_adam"`` (clients continue
        one server-held Adam state, averaged back each round: ``shared_adam.py``).
      server_optimizer: ``"sgd"`` (``build_sgdm`` without momentum: FedAvg), ``"adam"`` (``build_adam``:
        FedAdam) or ``"yogi"`` (``build_yogi``: FedYogi), applied to the negated example-weighted mean of the
        client deltas; its state lives in the server state (Reddi et al. 2021).

    Returns:
      ``tff.learning.templates.LearningProcess`` from
      ``tff.learning.algorithms.build_weighted_fed_avg``.

    Raises:
      ValueError: unknown ``client_optimizer`` or ``server_optimizer``.

    Note:
      TFF traces ``model_fn`` inside a ``tf.compat.v1`` graph, where Keras 2 swaps
      the base classes of every model and layer class it instantiates to their v1
      versions (``keras.src.utils.version_utils.swap_class``). Eager Keras models
      built earlier then fail ("Your Layer or Model is in an invalid state"). After
      building, the architecture is instantiated once eagerly, which swaps them back.
    """
    model_fn = _model_fn(model_builder, element_spec)
    builders = {"adam": tff.learning.optimizers.build_adam, "sgd": tff.learning.optimizers.build_sgdm}
    if client_optimizer not in (*builders, "shared_adam"):
        raise ValueError(f"unknown client optimizer {client_optimizer!r}; choose one of "
                         f"{', '.join(builders)}, shared_adam")
    servers = {"sgd": tff.learning.optimizers.build_sgdm, "adam": tff.learning.optimizers.build_adam,
               "yogi": tff.learning.optimizers.build_yogi}
    if server_optimizer not in servers:
        raise ValueError(f"unknown server optimizer {server_optimizer!r}; choose one of {', '.join(servers)}")
    if client_optimizer == "shared_adam":
        from tff_prune.federated.shared_adam import build_shared_adam_fed_avg

        process = build_shared_adam_fed_avg(model_fn, client_lr, servers[server_optimizer](learning_rate=server_lr))
        model_builder()  # eager instantiation: restores Keras' v2 classes (see Note)
        return process
    process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=builders[client_optimizer](learning_rate=client_lr),
        server_optimizer_fn=servers[server_optimizer](learning_rate=server_lr),
        client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES)
    model_builder()  # eager instantiation: restores Keras' v2 classes (see Note)
    return process


def build_fed_eval(model_builder: Callable[[], tf.keras.Model], element_spec) -> tff.learning.templates.LearningProcess:
    """Federated evaluation of one architecture: ``tff.learning.algorithms.build_fed_eval``.

    Clients evaluate the broadcast weights on their data and report example-weighted sums; the server sees
    the aggregate ``loss``, ``sparse_categorical_accuracy`` and ``num_examples`` (in
    ``metrics["client_work"]["eval"]["current_round_metrics"]``). Weights go in with ``set_model_weights``.
    """
    process = tff.learning.algorithms.build_fed_eval(_model_fn(model_builder, element_spec))
    model_builder()  # eager instantiation: restores Keras' v2 classes (see build_fed_avg)
    return process


def server_optimizer_state(state) -> list[np.ndarray]:
    """The server optimizer's state in a FedAvg process state (``state.finalizer``, flattened), as numpy arrays.

    For SGD without momentum it is the learning rate alone; FedAdam / FedYogi add the step count and the first
    and second moments of every trainable tensor (``tff.learning.optimizers``).
    """
    return [np.asarray(x) for x in tf.nest.flatten(state.finalizer)]


def with_server_optimizer_state(state, arrays) -> tff.learning.templates.LearningAlgorithmState:
    """``state`` with its server optimizer state replaced by ``arrays`` (from :func:`server_optimizer_state`).

    Raises:
      ValueError: ``arrays`` does not fit the state's structure (another optimizer or architecture).
    """
    return state._replace(finalizer=tf.nest.pack_sequence_as(state.finalizer, list(arrays)))  # a NamedTuple


def keras_to_model_weights(model: tf.keras.Model) -> tff.learning.models.ModelWeights:
    """ModelWeights (lists of numpy arrays) of a Keras model in TFF's order (``variables.tff_variable_split``)."""
    trainable, non_trainable = tff_variable_split(model)
    return tff.learning.models.ModelWeights(trainable=[v.numpy() for v in trainable],
                                            non_trainable=[v.numpy() for v in non_trainable])


def assign_model_weights(weights: tff.learning.models.ModelWeights, model: tf.keras.Model) -> None:
    """Writes a process's ModelWeights into the Keras ``model`` (inverse of :func:`keras_to_model_weights`).

    Raises:
      ValueError: the number of tensors does not match the model.
    """
    trainable, non_trainable = tff_variable_split(model)
    if len(trainable) != len(weights.trainable) or len(non_trainable) != len(weights.non_trainable):
        raise ValueError(f"ModelWeights with {len(weights.trainable)}+{len(weights.non_trainable)} tensors do not "
                         f"fit a model with {len(trainable)}+{len(non_trainable)} variables")
    for var, value in zip(trainable + non_trainable, list(weights.trainable) + list(weights.non_trainable)):
        var.assign(value)


def worker_pids() -> list[int]:
    """PIDs of the ``worker_binary`` child processes of this process (TFF's local C++ runtime). Linux only.

    Returns:
      the PIDs (empty where ``/proc`` does not exist).
    """
    me, out = os.getpid(), []
    if not os.path.isdir("/proc"):
        return out
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"worker_binary" in cmd:
            out.append(int(pid))
    return out


def stop_worker_processes() -> list[int]:
    """Ends the ``worker_binary`` child processes TFF's local C++ runtime started.

    TFF 0.87's default context starts ``worker_binary`` lazily and only stops it
    from a finaliser; a leftover worker keeps an inherited stdout open (so
    ``python run.py | tail`` would hang). Linux only (reads ``/proc``).

    Returns:
      the PIDs that were signalled.
    """
    killed = []
    for pid in worker_pids():
        try:
            # Not reaped here: TFF's ServiceManager owns the Popen; if this process runs TFF again it
            # signals and waits for its old worker (a reaped pid would raise ProcessLookupError there)
            # and starts a new one. A killed, unreaped worker is a zombie until then or until exit.
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        killed.append(pid)
    return killed
