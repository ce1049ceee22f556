"""Accuracy-guarded automatic pruning, the toolkit's default (``--schedule auto``).

The paper's method prunes from the first aggregate on and accepts any candidate with fewer parameters; early
in training its band removes the *strongest* filters and the model must recover again and again
(docs/RESULTS.md). This step decides when, how far and when to stop from what a federated server may see:
the aggregated weights and the metrics clients report from TFF's federated evaluation
(``tff.learning.algorithms.build_fed_eval``) of the global model on their own training examples.
Central test data never enters a decision.

1. **Warm-up.** Plain FedAvg. After every aggregation ``val_clients`` clients (sampled independently of
   training, seeded by ``(seed, round)``) evaluate the global model; ``v_r`` is their example-weighted
   accuracy. Training has plateaued when the mean of the last ``W`` values improved on the mean of the ``W``
   before by less than ``PLATEAU_RATIO`` (10%) of everything gained since round 1, and the model has clearly
   left its initial accuracy (``has_learned``). Warm-up lasts at least ``max(2W, R/10)`` rounds and at most
   ``0.4 R``; a model that has learned nothing by then is not pruned (its candidates could only be judged on
   chance-level accuracy). ``--warmup-rounds N`` fixes the warm-up at N rounds instead.
2. **Trials.** A candidate removes the fraction ``f`` (``--step-fraction``, first 0.25) of every prunable
   group's channels with the smallest L1 filter norm (the weak tail; survivors keep their weights). It trains
   for ``F`` rounds (``--recovery-rounds``) *beside* the current architecture, on the same clients with the
   same shuffling (the current model keeps training in its own LearningProcess). In the last ``ceil(F/2)``
   of them both are evaluated on the same validation clients; the candidate's cost is the mean paired
   difference ``d = v_current - v_candidate``.
3. **Accept or reject.** The candidate is accepted iff the costs of all accepted candidates stay within the
   budget ``--max-accuracy-loss`` (``eps``, an absolute accuracy, default 0.01): ``sum(max(d_i, 0)) <= eps``;
   then the next trial starts from it. Otherwise the current architecture, trained the same ``F`` rounds,
   continues (nothing is lost) and ``f`` halves. Pruning stops after ``--patience`` rejected candidates, when
   a candidate would remove nothing, or when no trial can start before ``min(0.6 R, R - F)`` (and, with
   ``--qat-rounds N``, end before round ``R - N + 1``). Then FedAvg trains the final architecture to round ``R``.

Trial rounds train two models, so their client compute and bytes are counted twice (``bytes_*`` include it).
``W`` and ``F`` default to ``R // 20`` clamped to [3, 10] and [2, 10] (10 and 10 at the paper's 500 rounds).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf

from tff_prune import accounting, pruning
from tff_prune.config import ExperimentConfig
from tff_prune.federated.sampling import derive_seed, sample_clients
from tff_prune.federated.steps.base import (RoundInfo, RunState, ServerStep, architecture_builder,
                                            compile_for_eval, skipped)
from tff_prune.pruning import Decision, prune_model

PLATEAU_RATIO = 0.1  # a window gaining < 10% of the total gain so far is a plateau
WARMUP_MAX_FRACTION = 0.4  # pruning starts by 0.4 R at the latest
TRIAL_MAX_FRACTION = 0.6  # no trial starts after 0.6 R
VAL_SEED_SALT = 7  # validation clients: sample_clients(..., seed=derive_seed(seed, 7), round)


def plateau_window(config: ExperimentConfig) -> int:
    """``W``: ``--plateau-window``, else ``R // 20`` clamped to [3, 10] (rounds)."""
    return config.plateau_window or int(np.clip(config.rounds // 20, 3, 10))


def recovery_rounds(config: ExperimentConfig) -> int:
    """``F``: ``--recovery-rounds``, else ``R // 20`` clamped to [2, 10] (rounds)."""
    return config.recovery_rounds or int(np.clip(config.rounds // 20, 2, 10))


def has_learned(history: list[float], window: int) -> bool:
    """True if the last ``window`` values are clearly above the first ``window`` (the model left its start).

    Clearly: the difference of the two window means exceeds twice the sum of their standard errors
    (population standard deviation / sqrt(W)), so round-to-round noise around the initial accuracy is not
    mistaken for learning. Needs at least ``2 * window`` values.
    """
    if len(history) < 2 * window:
        return False
    first, last = np.asarray(history[:window]), np.asarray(history[-window:])
    noise = 2 * (first.std() + last.std()) / np.sqrt(window)
    return float(last.mean() - first.mean()) > noise


def has_plateaued(history: list[float], window: int, ratio: float = PLATEAU_RATIO) -> bool:
    """True if the last ``window`` values gained less than ``ratio`` of all that was gained since the first.

    Args:
      history: validation accuracy after each round so far (round 1 first), floats in [0, 1].
      window: ``W`` (rounds).

    With ``m1`` the mean of the last ``W`` values and ``m0`` of the ``W`` before: ``m1 - m0 < ratio * (m1 -
    history[0])``, and :func:`has_learned` (a model that has learned nothing yet has not plateaued).
    """
    if not has_learned(history, window):
        return False
    m1, m0 = float(np.mean(history[-window:])), float(np.mean(history[-2 * window:-window]))
    return (m1 - m0) < ratio * (m1 - history[0])


class AutoPruning(ServerStep):
    """Warm-up to a plateau, then weak-tail pruning trials each judged by federated evaluation (module doc)."""

    name = "auto"
    prunes = True

    def __init__(self, config: ExperimentConfig):
        self.config = config
        R = config.rounds
        self.window = plateau_window(config)
        self.recovery = recovery_rounds(config)
        self.verify = math.ceil(self.recovery / 2)
        self.min_warmup = max(2 * self.window, math.ceil(R / 10))
        self.max_warmup = max(self.min_warmup, int(WARMUP_MAX_FRACTION * R))
        self.last_trial = min(int(TRIAL_MAX_FRACTION * R), R - self.recovery)
        if config.qat_rounds:  # every trial ends before quantization-aware training freezes the architecture
            self.last_trial = min(self.last_trial, R - config.qat_rounds - self.recovery)
        self.phase = "warmup"
        self.history: list[float] = []
        self.fraction = config.step_fraction
        self.used = 0.0
        self.rejections = 0
        self.accepted = 0
        self.trial_start = 0
        self.diffs: list[float] = []
        self._stop_reason = ""
        self.shadow: Optional[tf.keras.Model] = None  # the current architecture during a trial
        self._shadow_builder = self._shadow_process = self._shadow_state = None
        self._shadow_optimizer: list = []  # a resumed trial's shared client optimizer state

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def state_dict(self):
        keys = ("phase", "history", "fraction", "used", "rejections", "accepted", "trial_start", "diffs")
        state = {k: getattr(self, k) for k in keys}
        state["stop_reason"] = self._stop_reason
        state["shadow_json"] = self.shadow.to_json() if self.shadow is not None else None
        if self.shadow is None:
            return state, []
        from tff_prune.federated.shared_adam import client_optimizer_state  # TFF: only where rounds run

        weights = self.shadow.get_weights()
        optimizer = client_optimizer_state(self._shadow_state) if self._shadow_state is not None else []
        state["shadow_weights"], state["shadow_client_optimizer"] = len(weights), len(optimizer)
        return state, weights + optimizer

    def load_state_dict(self, state, arrays):
        for k in ("phase", "history", "fraction", "used", "rejections", "accepted", "trial_start", "diffs"):
            setattr(self, k, state[k])
        self._stop_reason = state["stop_reason"]
        if state.get("shadow_json"):
            self.shadow = tf.keras.models.model_from_json(state["shadow_json"])
            n = state.get("shadow_weights", len(arrays))
            self.shadow.set_weights(arrays[:n])
            self._shadow_optimizer = list(arrays[n:])

    def start(self, run: RunState, rt, resumed: bool) -> None:
        if self.shadow is not None:  # resumed inside a trial: the current architecture's process again
            self._shadow_builder = architecture_builder(self.shadow)
            self._shadow_process, self._shadow_state = rt.new_process(
                self._shadow_builder, self.shadow, "resume (current architecture of the trial)")
            if self._shadow_optimizer:  # --client-optimizer shared_adam: its state continues too
                from tff_prune.federated.shared_adam import with_client_optimizer_state

                self._shadow_state = with_client_optimizer_state(self._shadow_state, self._shadow_optimizer)
            compile_for_eval(self.shadow)

    # -- decisions -------------------------------------------------------------------------------------------
    def _stop(self, r: int, summary: dict, reason: str) -> Decision:
        self.phase, self._stop_reason = "done", reason
        return skipped(r, summary, reason, failures=self.rejections, stopped=True)

    def before_round(self, run: RunState, rt, r: int) -> Decision:
        summary = accounting.summarize(run.architecture)
        if self.phase == "trial":
            if run.frozen:
                return self._conclude(run, r, force_reason=run.frozen)
            if r - self.trial_start >= self.recovery:
                return self._conclude(run, r)
            return skipped(r, summary, f"trial round {r - self.trial_start + 1}/{self.recovery}: the candidate "
                                       f"trains beside the current architecture", failures=self.rejections)
        if self.phase == "done":
            return skipped(r, summary, self._stop_reason, failures=self.rejections, stopped=True)
        if run.frozen:
            return self._stop(r, summary, run.frozen)
        if self.phase == "warmup":
            if r == 1:
                return skipped(r, summary, "round 1 trains the initial model; warm-up until the federated "
                                           "validation accuracy plateaus")
            done = r - 1
            if self.config.warmup_rounds is not None:
                if done < self.config.warmup_rounds:
                    return skipped(r, summary, f"warm-up: round {done} of --warmup-rounds {self.config.warmup_rounds}")
                self.phase = "ready"
                return self._start_trial(run, rt, r, summary, f"warm-up ends (--warmup-rounds {done}); ")
            plateau = done >= self.min_warmup and has_plateaued(self.history, self.window)
            if not plateau and done < self.max_warmup:
                return skipped(r, summary, f"warm-up: federated validation accuracy still rising "
                                           f"(round {done} of at least {self.min_warmup}, at most {self.max_warmup})")
            if not plateau and not has_learned(self.history, self.window):
                return self._stop(r, summary, f"the model did not leave its initial accuracy in the "
                                              f"{self.max_warmup} warm-up rounds; nothing to judge candidates by")
            self.phase = "ready"
            why = "plateau" if plateau else f"warm-up limit ({self.max_warmup} rounds)"
            return self._start_trial(run, rt, r, summary, f"warm-up ends ({why}); ")
        return self._start_trial(run, rt, r, summary, "")

    def _start_trial(self, run: RunState, rt, r: int, summary: dict, prefix: str) -> Decision:
        c = self.config
        if r > self.last_trial:
            return self._stop(r, summary, f"{prefix}no trial can start after round {self.last_trial}")
        plan = pruning.plan(run.model, pruning.ratio(self.fraction), min_channels=c.min_channels,
                            round_to=c.round_to, round_mode="down" if c.round_to > 1 else "up")
        if plan.params_after >= summary["params"]:
            return self._stop(r, summary, f"{prefix}a step of {self.fraction:.3g} removes no channel")
        candidate = prune_model(run.model, plan, weights="inherit")
        self.shadow, self._shadow_builder = run.model, run.builder
        self._shadow_process, self._shadow_state = run.process, run.state
        run.replace_model(candidate, surgery=lambda m: prune_model(m, plan, weights="inherit"))
        self.phase, self.trial_start, self.diffs = "trial", r, []
        after = accounting.summarize(candidate)
        return Decision(round=r, action="trial", params_before=int(summary["params"]),
                        params_after=int(after["params"]), widths_before=dict(summary["widths"]),
                        widths_after=dict(after["widths"]), failures=self.rejections, stopped=False,
                        reason=f"{prefix}candidate without the {self.fraction:.3g} weakest (L1) channels of every "
                               f"group trains {self.recovery} rounds beside the current architecture")

    def _conclude(self, run: RunState, r: int, force_reason: str = "") -> Decision:
        cand = accounting.summarize(run.architecture)
        current = accounting.summarize(self.shadow)
        cost = float(np.mean(self.diffs)) if self.diffs else float("inf")
        n = len(self.diffs)
        eps = self.config.max_accuracy_loss
        ok = not force_reason and self.used + max(cost, 0.0) <= eps + 1e-12
        measured = (f"candidate {cand['params']} parameters: validation accuracy {-cost:+.2%} against the "
                    f"current architecture (mean of {n} paired evaluations)")
        if ok:
            self.used += max(cost, 0.0)
            self.accepted += 1
            self.phase = "ready"
            action, reason = "accepted", f"{measured}; budget used {self.used:.2%} of {eps:.2%}"
            widths_after, params_after = cand["widths"], cand["params"]
        else:
            # The current architecture trained the same rounds: it simply continues.
            run.model, run.architecture, run.builder = self.shadow, self.shadow, self._shadow_builder
            run.process, run.state = self._shadow_process, self._shadow_state
            run.rebuild, run.carry = False, None
            self.rejections += 1
            self.fraction /= 2
            action = "rejected"
            reason = force_reason or f"{measured}; over the budget ({self.used:.2%} used of {eps:.2%})"
            widths_after, params_after = current["widths"], current["params"]
            self.phase = "ready"
            if force_reason:
                self.phase, self._stop_reason = "done", force_reason
            elif self.rejections >= self.config.patience:
                self.phase = "done"
                self._stop_reason = f"{self.rejections} candidates rejected (round {r})"
                reason += "; pruning stops"
        self.shadow = self._shadow_builder = self._shadow_process = self._shadow_state = None
        return Decision(round=r, action=action, params_before=int(current["params"]), params_after=int(params_after),
                        widths_before=dict(current["widths"]), widths_after=dict(widths_after),
                        failures=self.rejections, stopped=self.phase == "done", reason=reason)

    # -- after aggregation -----------------------------------------------------------------------------------
    def _val_clients(self, rt, r: int) -> list[str]:
        ids = rt.data.client_ids
        return sample_clients(ids, min(self.config.val_clients, len(ids)),
                              derive_seed(self.config.seed, VAL_SEED_SALT), r)

    def after_aggregation(self, run: RunState, rt, info: RoundInfo, record: dict) -> None:
        r = info.round
        if self.phase == "warmup":
            clients = self._val_clients(rt, r)
            v = rt.evaluate(run.model, run.builder, clients, [0] * len(clients), f"round {r} (validation)")
            self.history.append(v["accuracy"])
            record["val_accuracy"] = v["accuracy"]
        elif self.phase == "trial":
            from tff_prune.federated.process import assign_model_weights  # TFF: only where rounds run
            from tff_prune.federated.variables import tff_variable_split

            result = rt.call(lambda: self._shadow_process.next(self._shadow_state, info.round_data),
                             f"round {r} (current architecture of the trial)")
            self._shadow_state = result.state
            assign_model_weights(rt.call(lambda: self._shadow_process.get_model_weights(self._shadow_state),
                                         f"round {r}"), self.shadow)
            uploaded = sum(int(v.shape.num_elements()) for v in tff_variable_split(self.shadow)[0])
            sent = accounting.round_bytes(self.shadow, len(info.clients), uploaded_params=uploaded)
            run.extra_bytes_down += sent["bytes_down"]
            run.extra_bytes_up += sent["bytes_up"]
            if r - self.trial_start + 1 > self.recovery - self.verify:
                clients = self._val_clients(rt, r)
                seeds = [0] * len(clients)
                cand = rt.evaluate(run.model, run.builder, clients, seeds, f"round {r} (validation)")
                cur = rt.evaluate(self.shadow, self._shadow_builder, clients, seeds, f"round {r} (validation)")
                self.diffs.append(cur["accuracy"] - cand["accuracy"])
                record["val_accuracy"] = cand["accuracy"]
                record["val_accuracy_current"] = cur["accuracy"]
