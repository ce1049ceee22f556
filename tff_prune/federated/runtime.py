"""Where a run's TFF computations execute: TFF's local runtime, or remote workers (``--workers``).

:class:`Runtime` is what the loop and the server steps use to build LearningProcesses for an architecture,
to turn sampled clients into what ``process.next`` takes (client ``tf.data`` pipelines locally, client keys
with workers, which build the datasets themselves), and to run federated evaluation (TFF's
``build_fed_eval``) of a model on clients' data.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_prune.config import ExperimentConfig
from tff_prune.data import FederatedData
from tff_prune.federated import distributed
from tff_prune.federated.process import build_fed_avg, build_fed_eval, keras_to_model_weights
from tff_prune.federated.sampling import derive_seed, sample_clients  # noqa: F401 (re-exported)


class Runtime:
    """A run's data, execution context and process factory.

    Args:
      config: the run's settings.
      data: its client data.
    """

    def __init__(self, config: ExperimentConfig, data: FederatedData):
        self.config = config
        self.data = data
        self.element_spec = data.client_dataset(data.client_ids[0], 1, config.batch_size, 0).element_spec
        self.cluster = distributed.default_cluster(config.workers, config.round_timeout)
        self._train_data_fn = self._eval_data_fn = None
        if self.cluster is not None:
            self._train_data_fn = distributed.dataset_computation(
                data.train, data.preprocess_fn, config.local_epochs, config.batch_size)
            self._eval_data_fn = distributed.dataset_computation(data.train, data.preprocess_fn, 1, config.batch_size)
        self._sizes: dict[str, int] = {}
        self._evaluators: dict[str, Any] = {}

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        """Runs ``fn`` (which calls TFF computations) locally, or on the workers under ``--round-timeout``.

        Raises:
          distributed.WorkerError: a worker did not answer in time (``what`` names the call).
        """
        return fn() if self.cluster is None else self.cluster.call(fn, what)

    def new_process(self, builder: Callable[[], tf.keras.Model], model: tf.keras.Model, what: str):
        """A FedAvg LearningProcess for ``builder``'s architecture and its state holding ``model``'s weights.

        Returns:
          ``(process, state)``.
        """
        c = self.config
        p = build_fed_avg(builder, self.element_spec, c.client_lr, c.server_lr, c.client_optimizer,
                          c.server_optimizer)
        if self.cluster is not None:
            p = distributed.compose(p, self._train_data_fn)
        weights = keras_to_model_weights(model)
        return p, self.call(lambda: p.set_model_weights(p.initialize(), weights), what)

    def _size(self, cid: str) -> int:
        if cid not in self._sizes:
            self._sizes[cid] = self.data.num_examples(cid)
        return self._sizes[cid]

    def round_data(self, clients: Sequence[str], seeds: Sequence[int], epochs: Optional[int] = None) -> list:
        """What ``process.next`` takes for these clients: ``tf.data`` pipelines locally (``epochs`` local epochs,
        default ``config.local_epochs``), or client keys spread evenly over the workers (``distributed``)."""
        c = self.config
        if self.cluster is None:
            return [self.data.client_dataset(cid, epochs or c.local_epochs, c.batch_size, seed)
                    for cid, seed in zip(clients, seeds)]
        keys = [distributed.client_key(cid, seed) for cid, seed in zip(clients, seeds)]
        return distributed.balanced_order(keys, [self._size(cid) for cid in clients], len(self.cluster.workers))

    def evaluate(self, model: tf.keras.Model, builder: Callable[[], tf.keras.Model], clients: Sequence[str],
                 seeds: Sequence[int], what: str) -> dict:
        """Federated evaluation of ``model`` on the *training* examples of ``clients`` (one pass each).

        TFF's ``tff.learning.algorithms.build_fed_eval`` (one process per architecture, cached), so only
        what the clients report reaches the server: example-weighted accuracy and loss.

        Returns:
          ``{"accuracy": float in [0, 1], "loss": float, "num_examples": int}``.
        """
        key = model.to_json()
        if key not in self._evaluators:
            p = build_fed_eval(builder, self.element_spec)
            if self.cluster is not None:
                p = distributed.compose(p, self._eval_data_fn)
            self._evaluators[key] = p
        p = self._evaluators[key]
        data = self.round_data(clients, seeds, epochs=1)
        weights = keras_to_model_weights(model)

        def run():
            state = p.set_model_weights(p.initialize(), weights)
            return p.next(state, data).metrics

        m = self.call(run, what)["client_work"]["eval"]["current_round_metrics"]
        return {"accuracy": float(m["sparse_categorical_accuracy"]), "loss": float(m["loss"]),
                "num_examples": int(m["num_examples"])}

    def forget_evaluators(self, keep: Sequence[tf.keras.Model] = ()) -> None:
        """Drops cached evaluation processes except those of the architectures in ``keep``."""
        keys = {m.to_json() for m in keep}
        self._evaluators = {k: v for k, v in self._evaluators.items() if k in keys}
