"""Server steps: the server-side behaviours of a run, plugged into the round loop (``base.py``).

:func:`build_steps` is the one place that knows which steps exist and which a configuration uses:

- ``FiniteGuard`` first, in every run: a NaN/inf aggregate or loss stops the run before other steps see it;
- ``QuantizationAware`` (``--qat-rounds``): it freezes the architecture before pruning decides;
- then the run's pruning step: ``AutoPruning`` (``--schedule auto``, the default), ``PaperPruning``
  (``--schedule paper``), ``MagnitudeMasks`` (``--method magnitude``), or none (``--no-prune``).
"""

from __future__ import annotations

from tff_prune.config import ExperimentConfig
from tff_prune.federated.steps.base import RoundInfo, RunState, ServerStep
from tff_prune.federated.steps.finite import DivergenceError, FiniteGuard
from tff_prune.federated.steps.structured import no_prune_decision


def build_steps(config: ExperimentConfig) -> list[ServerStep]:
    """The steps of a run, in the order their hooks are called (imported here: tfmot only where used)."""
    from tff_prune.federated.steps.auto import AutoPruning
    from tff_prune.federated.steps.magnitude_masks import MagnitudeMasks
    from tff_prune.federated.steps.quantization import QuantizationAware
    from tff_prune.federated.steps.structured import PaperPruning

    PRUNING_STEPS = {"auto": AutoPruning, "paper": PaperPruning}
    steps: list[ServerStep] = [FiniteGuard(config)]
    if config.qat_rounds:
        steps.append(QuantizationAware(config))
    if config.prune:
        steps.append(MagnitudeMasks(config) if config.method == "magnitude" else PRUNING_STEPS[config.schedule](config))
    return steps


__all__ = ["DivergenceError", "FiniteGuard", "RoundInfo", "RunState", "ServerStep", "build_steps",
           "no_prune_decision"]
