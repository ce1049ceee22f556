"""The paper's automatic stopping rule for server-side pruning.

Rounds are numbered 1..R here. At the start of round ``r`` the server proposes a
prune of the global model, i.e. of the FedAvg aggregate of round ``r - 1``, for
``1 <= r - 1 <= max_prune_round`` (the authors' notebooks number rounds from 0 and
prune at the start of rounds 1..MAX_PRUNED_ROUND: the same rounds). The prune is
accepted only if the parameter count strictly drops; after ``patience`` consecutive
proposals without a drop pruning stops for good (a success resets the count). After
that, and past ``max_prune_round``, the run is plain FedAvg.
(Authors' public code; paper Sec. III-C.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional


@dataclasses.dataclass
class ControllerState:
    """Serializable controller state (goes into the checkpoint).

    Attributes:
      failures: consecutive rounds whose proposal did not reduce the parameter count.
      stopped: True once pruning has ended (patience exhausted or max round passed).
      accepted: number of accepted prunes so far.
      stop_reason: why pruning stopped ('' while active).
      rounded: the one final rounding of ``--round-mode final`` has been done.
    """

    failures: int = 0
    stopped: bool = False
    accepted: int = 0
    stop_reason: str = ""
    rounded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ControllerState":
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One logged pruning decision.

    Attributes:
      round: the round at whose start the decision was made (on the aggregate of ``round - 1``).
      action: 'accepted', 'rejected' (no parameter drop), or 'skipped' (pruning inactive).
      params_before: parameter count before; params_after: of the proposal (equal if rejected/skipped).
      widths_before / widths_after: filters of every Conv2D (``accounting.conv_widths``; see ``pruning``'s
        definition of width).
      failures: consecutive failures after this decision.
      stopped: whether pruning is over after this decision; reason: human-readable text.
    """

    round: int
    action: str
    params_before: int
    params_after: int
    widths_before: dict
    widths_after: dict
    failures: int
    stopped: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)


class PruningController:
    """Decides when to prune and whether to accept a proposal.

    Args:
      max_prune_round: last round whose aggregate may be pruned (proposals happen at the
        start of rounds 2..max_prune_round + 1); 0 disables pruning.
      patience: consecutive non-improving proposals before stopping (>= 1).
      state: restored state (from a checkpoint), default fresh.

    Raises:
      ValueError: ``max_prune_round < 0`` or ``patience < 1``.
    """

    def __init__(self, max_prune_round: int, patience: int, state: Optional[ControllerState] = None):
        if max_prune_round < 0:
            raise ValueError(f"max_prune_round must be >= 0, got {max_prune_round}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.max_prune_round = max_prune_round
        self.patience = patience
        self.state = state or ControllerState()

    def should_propose(self, round_num: int) -> bool:
        """True if a prune should be proposed at the start of round ``round_num`` (a query: no state changes).

        Round 1 trains the initial model (there is no aggregate yet); the aggregates of rounds
        ``1..max_prune_round`` may be pruned, while pruning has not stopped.
        """
        return not self.state.stopped and 2 <= round_num and round_num - 1 <= self.max_prune_round

    def close_window(self, round_num: int) -> bool:
        """Stops pruning (reason 'max_prune_round reached') once ``round_num - 1`` exceeds ``max_prune_round``.

        Returns:
          True if this call stopped it.
        """
        if self.state.stopped or round_num - 1 <= self.max_prune_round:
            return False
        self.state.stopped = True
        self.state.stop_reason = f"max_prune_round ({self.max_prune_round}) reached"
        return True

    def decide(self, round_num: int, params_before: int, params_after: int,
               widths_before: Mapping[str, int], widths_after: Mapping[str, int]) -> Decision:
        """Accepts the proposal iff ``params_after < params_before``; updates patience.

        Returns:
          the :class:`Decision` to log and, if accepted, to apply.
        """
        s = self.state
        if params_after < params_before:
            action, s.failures = "accepted", 0
            s.accepted += 1
            reason = f"parameters {params_before} -> {params_after}"
        else:
            action = "rejected"
            s.failures += 1
            reason = (f"no parameter drop ({params_before} -> {params_after}); "
                      f"{s.failures}/{self.patience} patience used")
            if s.failures >= self.patience:
                s.stopped = True
                s.stop_reason = f"{self.patience} consecutive rounds without a parameter drop (round {round_num})"
                reason += "; pruning stops"
        return Decision(round=round_num, action=action, params_before=int(params_before),
                        params_after=int(params_after) if action == "accepted" else int(params_before),
                        widths_before=dict(widths_before),
                        widths_after=dict(widths_after if action == "accepted" else widths_before),
                        failures=s.failures, stopped=s.stopped, reason=reason)

    def final_rounding(self, round_num: int, params_before: int, params_after: int,
                       widths_before: Mapping[str, int], widths_after: Mapping[str, int],
                       round_to: int) -> Decision:
        """The one rounding of every group to a multiple of ``round_to`` after pruning stopped (``--round-mode final``).

        Accepted iff the parameter count drops (it does unless every width already is a multiple).

        Raises:
          RuntimeError: pruning has not stopped, or the rounding was already done.
        """
        s = self.state
        if not s.stopped or s.rounded:
            raise RuntimeError("final rounding happens once, after pruning has stopped")
        s.rounded = True
        accepted = params_after < params_before
        s.accepted += int(accepted)
        reason = (f"final rounding to multiples of {round_to}: parameters {params_before} -> {params_after}"
                  if accepted else f"final rounding to multiples of {round_to}: widths already are")
        return Decision(round=round_num, action="accepted" if accepted else "skipped",
                        params_before=int(params_before),
                        params_after=int(params_after) if accepted else int(params_before),
                        widths_before=dict(widths_before), widths_after=dict(widths_after if accepted else widths_before),
                        failures=s.failures, stopped=True, reason=reason)

    def skipped(self, round_num: int, params: int, widths: Mapping[str, int],
                reason: Optional[str] = None) -> Decision:
        """A 'skipped' decision for a round in which no prune is proposed (``reason`` overrides the text)."""
        reason = reason or self.state.stop_reason or "pruning inactive"
        return Decision(round=round_num, action="skipped", params_before=int(params), params_after=int(params),
                        widths_before=dict(widths), widths_after=dict(widths), failures=self.state.failures,
                        stopped=self.state.stopped, reason=reason)
