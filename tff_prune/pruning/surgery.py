"""Model surgery: physically remove the channels of a :class:`PruningPlan`.

``prune_model`` rebuilds the model from its Keras config with fewer filters/units in
every producer of a pruned group and, with ``weights="inherit"``, copies the survivors'
weights into every coupled tensor (producers' kernels and biases, BatchNormalization
gamma/beta/moving statistics, DepthwiseConv2D kernels, consumers' input channels or
Flatten rows). The result computes what ``mask_model`` computes: the original with the
removed channels' producing weights zeroed.

``weights="reinit"`` returns the smaller architecture with fresh initial weights, as
the paper's public code does after every prune.
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence, Union

import tensorflow as tf

from tff_prune.pruning.planning import PruningPlan, layer_masks, plan_from_keep
from tff_prune.pruning.slicing import slice_weights, zero_removed

L = tf.keras.layers
WEIGHT_MODES = ("inherit", "reinit")
PlanLike = Union[PruningPlan, Mapping[str, Sequence[int]]]


def _as_plan(model: tf.keras.Model, plan: PlanLike) -> PruningPlan:
    if isinstance(plan, PruningPlan):
        names = {layer.name for layer in model.layers}
        if set(plan.widths_before) - names or plan.params_before != model.count_params():
            raise ValueError("the plan was made for a different model (layer names or parameter count differ); "
                             "make the plan with tff_prune.pruning.plan(model, ...) on this model")
        return plan
    return plan_from_keep(model, plan)


def _layer_configs(config: dict) -> dict[str, dict]:
    return {entry["config"]["name"]: entry["config"] for entry in config["layers"]}


def _reseed_initializers(layer_config: dict, seed: int) -> None:
    for key, value in layer_config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and isinstance(value.get("config"), dict) \
                and "seed" in value["config"]:
            value["config"]["seed"] = seed


def prune_model(model: tf.keras.Model, plan: PlanLike, weights: str = "inherit",
                seed: Optional[int] = None) -> tf.keras.Model:
    """Returns a new, smaller Keras model without the plan's channels.

    Args:
      model: the functional or Sequential Keras model the plan was made for.
      plan: a :class:`PruningPlan`, or ``{producer layer: filter indices to keep}``
        (the first release's CNN API; other producers keep all filters).
      weights: ``"inherit"`` copies the surviving weights (the result equals
        ``mask_model(model, plan)`` up to float summation order); ``"reinit"`` gives every
        layer fresh weights from its initialiser (the authors' behaviour after a prune).
      seed: with ``"reinit"``, initialiser seed (layer i gets ``seed + i``); None keeps
        the initialisers' configured seeds.

    Returns:
      a new ``tf.keras.Model`` with the same layer names and ``plan.params_after``
      parameters; ``model`` is not modified.

    Raises:
      ValueError: unknown weights mode, a plan for another model, bad keep indices.
      UnsupportedLayerError: a keep entry names a layer whose channels cannot be pruned.
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be 'inherit' or 'reinit', got {weights!r}")
    plan = _as_plan(model, plan)
    masks = plan.keep_masks()
    config = copy.deepcopy(model.get_config())
    configs = _layer_configs(config)
    for name, width in plan.widths_after.items():
        key = "units" if type(model.get_layer(name)) is L.Dense else "filters"
        configs[name][key] = int(width)
    if weights == "reinit" and seed is not None:
        for i, layer in enumerate(model.layers):
            _reseed_initializers(configs[layer.name], int(seed) + i)
    new = model.__class__.from_config(config)
    if weights == "inherit":
        for layer in model.layers:
            if layer.weights:
                in_keep, out_keep = layer_masks(plan.graph, masks, layer)
                new.get_layer(layer.name).set_weights(slice_weights(layer, in_keep, out_keep))
    return new


def mask_model(model: tf.keras.Model, plan: PlanLike) -> tf.keras.Model:
    """A same-shaped copy of ``model`` in which the plan's channels are exactly zero.

    For every removed channel, its producers' kernel slices and biases are zeroed, and so
    are the BatchNormalization gamma and beta and the DepthwiseConv2D kernel and bias of
    that channel (see :func:`tff_prune.pruning.slicing.zero_removed`).

    Raises:
      ValueError, UnsupportedLayerError: as :func:`prune_model`.
    """
    plan = _as_plan(model, plan)
    masks = plan.keep_masks()
    masked = tf.keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for layer in model.layers:
        in_keep, out_keep = layer_masks(plan.graph, masks, layer)
        zero_removed(masked.get_layer(layer.name), in_keep, out_keep)
    return masked
