"""The tfmot unstructured baseline as a server step (``--method magnitude``, ``federated/magnitude.py``).

The global model trains under ``prune_low_magnitude`` wrappers; after each aggregation the server updates every
kernel's magnitude mask (polynomial decay to ``--target-sparsity`` by ``--max-prune-round``) and the clients
train under the masks it broadcasts next. After the last round the wrappers are stripped.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tff_prune import accounting
from tff_prune.federated import magnitude
from tff_prune.federated.process import keras_to_model_weights
from tff_prune.federated.steps.base import RoundInfo, RunState, ServerStep, compile_for_eval, skipped
from tff_prune.pruning import Decision


class MagnitudeMasks(ServerStep):
    """tfmot ``prune_low_magnitude`` with server-side mask updates (no filter is removed)."""

    name = "magnitude"
    prunes = True

    def __init__(self, config):
        self.config = config

    def start(self, run: RunState, rt, resumed: bool) -> None:
        c = self.config
        if not resumed:
            run.model = compile_for_eval(magnitude.wrap(run.architecture, c.target_sparsity, c.max_prune_round))
        run.builder = magnitude.builder(run.architecture, c.target_sparsity, c.max_prune_round)

    def restore_model(self, model: tf.keras.Model, config) -> Optional[tf.keras.Model]:
        return magnitude.wrap(model, config.target_sparsity, config.max_prune_round)

    def before_round(self, run: RunState, rt, r: int) -> Decision:
        return skipped(r, accounting.summarize(run.architecture),
                       "--method magnitude: the server sets magnitude masks after each aggregation")

    def after_aggregation(self, run: RunState, rt, info: RoundInfo, record: dict) -> None:
        # Masks of this round's sparsity, applied to the aggregate, sent with the next broadcast.
        record["kernel_sparsity"] = magnitude.server_update(run.model, info.round)
        weights = keras_to_model_weights(run.model)
        run.state = rt.call(lambda: run.process.set_model_weights(run.state, weights), f"round {info.round} (masks)")

    def finish(self, run: RunState, rt) -> None:
        stripped = compile_for_eval(magnitude.strip(run.model))
        run.model = run.architecture = stripped
