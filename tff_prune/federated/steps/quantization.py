"""Quantization-aware training of the final architecture as a server step (``--qat-rounds N``).

At the start of round ``R - N + 1`` the architecture is frozen (pruning steps stop, giving the reason) and the
global model becomes ``tfmot`` quantization-aware (``federated/qat.py``); its fake-quant ranges travel in the
clients' updates (``variables.py``). The float architecture stays ``RunState.architecture``.
"""

from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf

from tff_prune.federated.qat import quantize
from tff_prune.federated.steps.base import RoundInfo, RunState, ServerStep, architecture_builder

log = logging.getLogger("tff_prune.federated.loop")


class QuantizationAware(ServerStep):
    """The last ``qat_rounds`` rounds train ``quantize(architecture)`` in TFF."""

    name = "qat"

    def __init__(self, config):
        self.config = config
        self.first_round = config.rounds - config.qat_rounds + 1
        self.active = False

    def state_dict(self):
        return {"active": self.active}, []

    def load_state_dict(self, state, arrays):
        self.active = bool(state.get("active", False))

    def restore_model(self, model: tf.keras.Model, config) -> Optional[tf.keras.Model]:
        return quantize(model) if self.active else None

    def start(self, run: RunState, rt, resumed: bool) -> None:
        if self.active:
            run.builder = self._builder(run.architecture)
            run.frozen = self._reason()

    def _reason(self) -> str:
        return f"quantization-aware training (last {self.config.qat_rounds} rounds): the architecture is fixed"

    @staticmethod
    def _builder(architecture: tf.keras.Model):
        build = architecture_builder(architecture)
        return lambda: quantize(build())

    def before_round(self, run: RunState, rt, r: int) -> None:
        """From round ``R - N + 1`` on: freezes the architecture and makes the global model quantization-aware.

        Runs before the pruning step, which then skips with the reason in ``run.frozen``.
        """
        if r >= self.first_round and not self.active:
            self.active = True
            run.frozen = self._reason()
            arch = run.architecture
            run.replace_model(quantize(run.model), architecture=arch, builder=self._builder(arch))
            log.info("round %d: quantization-aware training starts (last %d rounds)", r, self.config.qat_rounds)

    def after_aggregation(self, run: RunState, rt, info: RoundInfo, record: dict) -> None:
        record["qat"] = self.active
