"""The server-step interface: what a server-side behaviour may do around a FedAvg round.

The round loop (``loop.py``) knows only this interface. A step is a small object with explicit,
serialisable state (as TFF's ``learning.templates`` keep state explicit, and with the round number
passed to every hook, as Flower's ``Strategy`` does):

- :meth:`ServerStep.start` once, on a fresh run or a resumed one, after the initial model exists;
- :meth:`ServerStep.before_round` at the start of round ``r``, on the aggregate of round ``r - 1``:
  it may change the architecture (:meth:`RunState.replace_model`); a pruning step returns the round's
  :class:`~tff_prune.pruning.Decision`;
- :meth:`ServerStep.after_aggregation` after the round's FedAvg aggregate is in the global model: it
  may adjust weights or masks, train or evaluate on the round's clients, and add fields to the round's
  record;
- :meth:`ServerStep.round_done` when the round's record is complete (evaluation included), before it and
  the checkpoint are written: a check that raises here leaves the previous round's checkpoint;
- :meth:`ServerStep.finish` after the last round (e.g. strip training-only wrappers);
- :meth:`ServerStep.state_dict` / :meth:`ServerStep.load_state_dict`: what the checkpoint keeps,
  JSON plus a list of numpy arrays;
- :meth:`ServerStep.restore_model`: rebuild the trained model (e.g. under tfmot wrappers) from the
  checkpointed float architecture.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import tensorflow as tf

from tff_prune.pruning import Decision

if TYPE_CHECKING:  # pragma: no cover
    from tff_prune.federated.runtime import Runtime


def compile_for_eval(model: tf.keras.Model) -> tf.keras.Model:
    """Compiles ``model`` in place for central evaluation (sparse CE loss, accuracy); returns it."""
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def architecture_builder(model: tf.keras.Model) -> Callable[[], tf.keras.Model]:
    """A builder of new, uncompiled instances of ``model``'s architecture (``from_config``), for TFF's model_fn."""
    config, cls = model.get_config(), model.__class__
    return lambda: cls.from_config(config)


@dataclasses.dataclass
class RoundInfo:
    """The round being run, as the hooks after aggregation see it.

    Attributes:
      round: round number ``r`` (1-based).
      clients: the sampled client ids, in order.
      seeds: per client, the seed of its ``tf.data`` shuffle.
      round_data: what ``process.next`` received: client datasets, or client keys with ``--workers``.
    """

    round: int
    clients: list[str]
    seeds: list[int]
    round_data: list


@dataclasses.dataclass
class RunState:
    """The mutable state of a run between hooks.

    Attributes:
      model: the global Keras model the LearningProcess trains (under tfmot wrappers for QAT or magnitude
        pruning), holding the current global weights.
      architecture: the float architecture of ``model`` (``model`` itself when it is not wrapped); parameters,
        FLOPs and widths are counted on it, and the export converts it.
      builder: returns new uncompiled instances of ``model`` for TFF's ``model_fn``.
      process, state: the round's ``tff.learning.templates.LearningProcess`` and its state.
      counters: cumulative counters kept in the checkpoint (``bytes_down``, ``bytes_up``: bytes, ints).
      frozen: non-empty while the architecture may not change (the reason, logged by pruning steps).
      rebuild: set by :meth:`replace_model`; the loop then builds a new process holding ``model``'s weights.
      carry: set by :meth:`replace_model` when the new model's channels are a subset of the old one's:
        ``(old model, surgery)``; the loop moves the clients' shared optimizer state (``--client-optimizer
        shared_adam``) through the same surgery. None: the new process starts from a fresh optimizer state.
      extra_bytes_down, extra_bytes_up: bytes a step sent this round beyond the global model's (reset per round).
    """

    model: tf.keras.Model
    architecture: tf.keras.Model
    builder: Callable[[], tf.keras.Model]
    process: Any = None
    state: Any = None
    counters: dict = dataclasses.field(default_factory=lambda: {"bytes_down": 0, "bytes_up": 0})
    frozen: str = ""
    rebuild: bool = False
    carry: Optional[tuple] = None
    extra_bytes_down: int = 0
    extra_bytes_up: int = 0

    def replace_model(self, model: tf.keras.Model, architecture: Optional[tf.keras.Model] = None,
                      builder: Optional[Callable[[], tf.keras.Model]] = None,
                      surgery: Optional[Callable[[tf.keras.Model], tf.keras.Model]] = None) -> None:
        """Makes ``model`` the global model (compiled here); the loop builds its LearningProcess before training.

        ``architecture`` defaults to ``model`` and ``builder`` to :func:`architecture_builder` of ``model``.
        ``surgery`` turns a model of the *current* architecture into one of ``model``'s channel by channel (e.g.
        ``lambda m: prune_model(m, plan, weights="inherit")``); given, per-weight optimizer state carries over.
        """
        self.carry = (self.model, surgery) if surgery is not None else None
        self.model = compile_for_eval(model)
        self.architecture = model if architecture is None else architecture
        self.builder = builder or architecture_builder(model)
        self.rebuild = True


class ServerStep:
    """Base class of server-side behaviours; every hook is optional (the defaults do nothing).

    Subclasses set ``name`` (the key of their state in the checkpoint) and ``prunes`` (True for the one
    step per run that makes the round's pruning decision).
    """

    name: str = "step"
    prunes: bool = False

    def start(self, run: RunState, rt: "Runtime", resumed: bool) -> None:
        """Called once before the first round of this process (``resumed``: after :meth:`load_state_dict`)."""

    def before_round(self, run: RunState, rt: "Runtime", r: int) -> Optional[Decision]:
        """At the start of round ``r``; a pruning step returns the round's decision (others None)."""
        return None

    def after_aggregation(self, run: RunState, rt: "Runtime", info: RoundInfo, record: dict) -> None:
        """After round ``info.round``'s aggregate is in ``run.model``; may add fields to ``record``."""

    def round_done(self, run: RunState, rt: "Runtime", info: RoundInfo, record: dict) -> None:
        """When round ``info.round``'s ``record`` is complete, before it and the checkpoint are written."""

    def finish(self, run: RunState, rt: "Runtime") -> None:
        """After the last round."""

    @property
    def stop_reason(self) -> str:
        """Why pruning stopped ('' if it did not stop or this step does not prune)."""
        return ""

    def state_dict(self) -> tuple[dict, list[np.ndarray]]:
        """(JSON-serialisable state, arrays) for the checkpoint."""
        return {}, []

    def load_state_dict(self, state: dict, arrays: list[np.ndarray]) -> None:
        """Inverse of :meth:`state_dict`."""

    def restore_model(self, model: tf.keras.Model, config) -> Optional[tf.keras.Model]:
        """On resume: the model to train given the float architecture ``model`` (None: ``model`` itself)."""
        return None


def skipped(r: int, architecture_summary: dict, reason: str, failures: int = 0, stopped: bool = False) -> Decision:
    """A 'skipped' decision: no prune proposed at the start of round ``r`` (``reason`` says why)."""
    params, widths = int(architecture_summary["params"]), dict(architecture_summary["widths"])
    return Decision(round=r, action="skipped", params_before=params, params_after=params, widths_before=widths,
                    widths_after=dict(widths), failures=failures, stopped=stopped, reason=reason)
