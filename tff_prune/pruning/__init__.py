"""The pruning engine: plain Keras + NumPy, usable without TFF.

- :func:`dependency_graph`: channel-dependency groups of a functional/Sequential model (nested
  models walked into); :func:`coverage`: the share of filters in prunable groups;
  :func:`register_layer_rule` / :func:`register_layer_slicer`: teach it a layer type of your own.
- :func:`band`, :func:`band_low`, :func:`ratio`: criteria; :func:`plan` -> :class:`PruningPlan`.
- :func:`prune_model` / :func:`mask_model`: structured surgery (inherit or re-init weights).
- :class:`PruningController`: accept-on-parameter-drop with patience and a last prune round.

*Width* means one thing throughout the toolkit: a layer's number of output channels (filters of a
convolution, units of a Dense layer), keyed by layer name (``"<nested model>/<layer>"`` inside nested models).
``PruningPlan.widths_before`` / ``widths_after`` give it for every producer layer of the dependency graph
(Conv2D, SeparableConv2D, Dense); ``tff_prune.accounting.conv_widths`` for the Conv2D layers, which is what
``summary.json``, ``metrics.jsonl`` and the controller's :class:`Decision` report.

Example::

    from tff_prune import pruning
    p = pruning.plan(model, pruning.band(2.2), round_to=8)
    smaller = pruning.prune_model(model, p, weights="inherit")
"""

from tff_prune.pruning.controller import ControllerState, Decision, PruningController
from tff_prune.pruning.criteria import (CRITERION_NAMES, Criterion, band, band_keep_mask, band_low,
                                         criterion_from_name, filter_l1, ratio)
from tff_prune.pruning.graph import (LAYER_RULES, DependencyGraph, DependencyGroup, LayerContext,
                                     UnsupportedLayerError, barriers, coverage, dependency_graph, leaf_layers,
                                     register_layer_rule, resolve_layer)
from tff_prune.pruning.planning import (IMPORTANCES, PlannedGroup, PruningPlan, batchnorm_scale_importance,
                                        group_importance, l1_and_batchnorm_importance, l1_importance, plan,
                                        plan_from_channels, plan_from_keep)
from tff_prune.pruning.slicing import register_layer_slicer
from tff_prune.pruning.surgery import custom_objects_of, mask_model, prune_model


__all__ = [
    "CRITERION_NAMES", "ControllerState", "Criterion", "Decision", "DependencyGraph", "DependencyGroup",
    "IMPORTANCES", "LAYER_RULES", "LayerContext", "PlannedGroup", "PruningController", "PruningPlan",
    "UnsupportedLayerError", "band", "band_keep_mask", "band_low", "barriers", "batchnorm_scale_importance",
    "coverage", "criterion_from_name", "custom_objects_of", "dependency_graph", "filter_l1", "group_importance",
    "l1_and_batchnorm_importance", "l1_importance", "leaf_layers", "mask_model", "plan", "plan_from_channels",
    "plan_from_keep", "prune_model", "ratio", "register_layer_rule", "register_layer_slicer", "resolve_layer",
]
