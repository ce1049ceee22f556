"""The paper's automatic structured pruning as a server step (``--schedule paper``).

At the start of round ``r >= 2`` with ``r - 1 <= --max-prune-round`` the server applies the criterion
(the band ``mu +- k*sigma`` of each group's L1 filter norms, or ``band_low`` / ``ratio``) to the global model,
builds the smaller model (``inherit`` or ``reinit``) and the :class:`~tff_prune.pruning.PruningController`
accepts it iff the parameter count strictly drops; ``--patience`` consecutive rounds without a drop end
pruning (Nguyen, Le, Avila 2024, arXiv 2411.01759, Sec. III-C and the authors' code). With
``--round-mode final`` every group is rounded down to a multiple of ``--round-to`` once, when pruning stops.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import tensorflow as tf

from tff_prune import accounting, pruning
from tff_prune.config import ExperimentConfig
from tff_prune.federated.sampling import derive_seed
from tff_prune.federated.steps.base import RunState, ServerStep, skipped
from tff_prune.pruning import ControllerState, Decision, PruningController, prune_model


def make_plan(model: tf.keras.Model, config: ExperimentConfig) -> pruning.PruningPlan:
    """The server's pruning proposal for the global ``model`` under the run's criterion."""
    criterion = pruning.criterion_from_name(config.criterion, k=config.k, prune_ratio=config.prune_ratio)
    if config.round_mode == "final":  # rounding waits until pruning stops (final_rounding_plan)
        return pruning.plan(model, criterion, min_channels=config.min_channels)
    return pruning.plan(model, criterion, min_channels=config.min_channels, round_to=config.round_to,
                        round_mode=config.round_mode)


def final_rounding_plan(model: tf.keras.Model, config: ExperimentConfig) -> pruning.PruningPlan:
    """``--round-mode final``: every group rounded down to a multiple of ``round_to`` (its weakest channels go)."""
    return pruning.plan(model, pruning.ratio(0.0), min_channels=config.min_channels, round_to=config.round_to,
                        round_mode="down")


def note_unrounded(decision: Decision, plan: pruning.PruningPlan, round_to: int) -> Decision:
    """The final rounding's decision with its reason naming the groups that are not multiples of ``round_to``.

    A group with fewer than ``round_to`` channels keeps all of them (it cannot reach a multiple), so its
    width stays what it was; the controller's reason would otherwise read as if every group were rounded.
    """
    widths = decision.widths_after
    narrow = sorted({p: widths[p] for g in plan.groups for p in g.producers
                     if p in widths and widths[p] % round_to}.items())
    if not narrow:
        return decision
    head = decision.reason.split(": ")[0]
    done = (f"parameters {decision.params_before} -> {decision.params_after}" if decision.action == "accepted"
            else "no group changed")
    names = ", ".join(f"{name} ({w})" for name, w in narrow)
    return dataclasses.replace(decision, reason=f"{head}: {done}; {names} not rounded: fewer than {round_to} "
                                                f"channels, kept as they are")


class PaperPruning(ServerStep):
    """The paper's band criterion with accept-on-parameter-drop and patience (``--schedule paper``).

    State: the controller's (:class:`~tff_prune.pruning.ControllerState`).
    """

    name = "structured"
    prunes = True

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.controller = PruningController(config.max_prune_round, config.patience)

    @property
    def stop_reason(self) -> str:
        return self.controller.state.stop_reason

    def state_dict(self):
        return self.controller.state.to_dict(), []

    def load_state_dict(self, state, arrays):
        self.controller = PruningController(self.config.max_prune_round, self.config.patience,
                                            ControllerState.from_dict(state))

    def before_round(self, run: RunState, rt, r: int) -> Optional[Decision]:
        c, ctl = self.config, self.controller
        summary = accounting.summarize(run.architecture)
        if run.frozen:
            if not ctl.state.stopped:
                ctl.state.stopped, ctl.state.stop_reason = True, run.frozen
            return ctl.skipped(r, summary["params"], summary["widths"], run.frozen)
        ctl.close_window(r)
        if ctl.should_propose(r):
            plan, decide = make_plan(run.model, c), ctl.decide
        elif c.round_mode == "final" and c.round_to > 1 and ctl.state.stopped and not ctl.state.rounded:
            plan = final_rounding_plan(run.model, c)
            decide = functools.partial(ctl.final_rounding, round_to=c.round_to)
        else:
            reason = "round 1 trains the initial model; pruning starts after the first aggregation" if r == 1 else None
            return ctl.skipped(r, summary["params"], summary["widths"], reason)
        proposal = prune_model(run.model, plan, weights=c.weights,
                               seed=derive_seed(c.seed, r, 1) if c.weights == "reinit" else None)
        decision = decide(r, summary["params"], accounting.count_params(proposal),
                          summary["widths"], accounting.conv_widths(proposal))
        if decide is not ctl.decide:
            decision = note_unrounded(decision, plan, c.round_to)
        if decision.action == "accepted":
            inherit = c.weights == "inherit"
            run.replace_model(proposal, surgery=(lambda m: prune_model(m, plan, weights="inherit")) if inherit else None)
        return decision


def no_prune_decision(r: int, run: RunState) -> Decision:
    """The decision of a plain FedAvg round (``--no-prune``)."""
    return skipped(r, accounting.summarize(run.architecture), "pruning disabled (--no-prune)")
