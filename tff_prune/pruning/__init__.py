"""The pruning engine: plain Keras + NumPy, usable without TFF.

- :func:`dependency_graph`: channel-dependency groups of a functional/Sequential model.
- :func:`band`, :func:`band_low`, :func:`ratio`: criteria; :func:`plan` -> :class:`PruningPlan`.
- :func:`prune_model` / :func:`mask_model`: structured surgery (inherit or re-init weights).
- :class:`PruningController`: accept-on-parameter-drop with patience and a last prune round.

Example::

    from tff_prune import pruning
    p = pruning.plan(model, pruning.band(2.2), round_to=8)
    smaller = pruning.prune_model(model, p, weights="inherit")
"""

from tff_prune.pruning.controller import ControllerState, Decision, PruningController
from tff_prune.pruning.criteria import (Criterion, band, band_keep_mask, band_low, filter_l1, l1_filter_norms, ratio,
                                         widths_after)
from tff_prune.pruning.graph import (DependencyGraph, DependencyGroup, UnsupportedLayerError, barriers,
                                     dependency_graph)
from tff_prune.pruning.planning import (PlannedGroup, PruningPlan, group_importance, plan, plan_from_channels,
                                    plan_from_keep)
from tff_prune.pruning.surgery import mask_model, prune_model


def band_selection(model, k: float) -> dict:
    """Filters each Conv2D keeps under the paper's band criterion: ``{layer: sorted kept filter indices}``.

    The first release's API, now a thin layer over :func:`plan` (groups of a plain CNN are its convs).
    """
    p = plan(model, band(k))
    return {name: g.kept_filters(name) for g in p.groups for name in g.producers}


__all__ = [
    "ControllerState", "Criterion", "Decision", "DependencyGraph", "DependencyGroup", "PlannedGroup",
    "PruningController", "PruningPlan", "UnsupportedLayerError", "band", "band_keep_mask", "band_low", "band_selection",
    "barriers", "dependency_graph", "filter_l1", "group_importance", "l1_filter_norms", "mask_model", "plan",
    "plan_from_channels", "plan_from_keep", "prune_model", "ratio", "widths_after",
]
