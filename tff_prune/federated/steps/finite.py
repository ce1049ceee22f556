"""Divergence guard: a non-finite aggregate or loss stops the run in the round it appears.

A diverged round (e.g. ``--client-optimizer sgd --client-lr 1e30``) gives NaN/inf weights; left alone, the
next rounds' prunes are judged on NaN scores, the checkpoint stores NaN and the TFLite int8 converter crashes
on infinite quantization scales. :class:`FiniteGuard` checks every tensor of the aggregate and the round's
train loss after aggregation, and the evaluation loss when the round's record is complete, and raises
:class:`DivergenceError` naming the round and the tensor. It runs before the round's record and checkpoint are
written, so ``checkpoint.npz`` keeps the last finite round.
"""

from __future__ import annotations

import math

import numpy as np

from tff_prune.federated.checkpoint import checkpoint_path
from tff_prune.federated.steps.base import RoundInfo, RunState, ServerStep


class DivergenceError(RuntimeError):
    """A round produced non-finite weights or loss; the message names the round, the tensor and the fix.

    Attributes:
      round: the round (1-based); what: the tensor or metric that is not finite.
    """

    def __init__(self, message: str, round: int, what: str):
        super().__init__(message)
        self.round, self.what = round, what


class FiniteGuard(ServerStep):
    """Raises :class:`DivergenceError` when a round's aggregate, train loss or evaluation loss is NaN or inf."""

    name = "finite"

    def __init__(self, config):
        self.config = config

    def _fail(self, r: int, what: str, detail: str) -> None:
        c = self.config
        kept = (f"the checkpoint of round {r - 1}, the last finite one, stays in {checkpoint_path(c.output_dir)}"
                if r > 1 else "no round finished, so there is no checkpoint")
        raise DivergenceError(
            f"round {r}: training diverged: {detail}. Start again with a smaller --client-lr (now {c.client_lr:g}) "
            f"or --server-lr (now {c.server_lr:g}), with --overwrite or another --output-dir; {kept}", r, what)

    def after_aggregation(self, run: RunState, rt, info: RoundInfo, record: dict) -> None:
        r = info.round
        for var in run.model.weights:
            values = np.asarray(var.numpy())
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
                self._fail(r, var.name, f"the FedAvg aggregate is not finite: {var.name} holds {nan} NaN and "
                                        f"{inf} inf of {values.size} values (train_loss {record.get('train_loss')})")
        loss = record.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            self._fail(r, "train_loss", f"the clients' train_loss is {loss}")

    def round_done(self, run: RunState, rt, info: RoundInfo, record: dict) -> None:
        loss = record.get("eval_loss")
        if loss is not None and not math.isfinite(loss):
            self._fail(info.round, "eval_loss", f"the global model's eval_loss on the test data is {loss}")
