"""Model surgery: physically remove the channels of a :class:`PruningPlan`.

``prune_model`` rebuilds the model from its Keras config with fewer filters/units in
every producer of a pruned group (and the matching ``groups`` of depthwise-like grouped
convolutions and of GroupNormalizations, ``target_shape`` of channel-keeping Reshapes,
per-channel constants of TF ops) and, with ``weights="inherit"``, copies the survivors' weights into every coupled
tensor (producers' kernels and biases, BatchNormalization gamma/beta/moving statistics,
DepthwiseConv2D kernels, consumers' input channels or Flatten rows). The result computes
what ``mask_model`` computes: the original with the removed channels' producing weights
zeroed. Nested Functional/Sequential models stay nested (same names) in the result.

Custom layers (ConvNeXt's ``LayerScale``, your own): the rebuild deserializes every layer
class found in the model (registered Keras names and class names) plus ``custom_objects``;
a custom layer whose weights would have to be sliced has no rule and is a barrier, so its
channels are never touched.

``weights="reinit"`` returns the smaller architecture with fresh initial weights, as
the paper's public code does after every prune.
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tff_prune.pruning.graph import TFOpLambda, UnsupportedLayerError, leaf_layers
from tff_prune.pruning.planning import PruningPlan, layer_masks, plan_from_keep
from tff_prune.pruning.slicing import slice_weights, zero_removed

L = tf.keras.layers
WEIGHT_MODES = ("inherit", "reinit")
PlanLike = Union[PruningPlan, Mapping[str, Sequence[int]]]


def _as_plan(model: tf.keras.Model, plan: PlanLike) -> PruningPlan:
    if isinstance(plan, PruningPlan):
        if set(plan.widths_before) - set(leaf_layers(model)) or plan.params_before != model.count_params():
            raise ValueError("the plan was made for a different model (layer names or parameter count differ); "
                             "make the plan with tff_prune.pruning.plan(model, ...) on this model")
        return plan
    return plan_from_keep(model, plan)


def _layer_configs(config: dict, prefix: str = "", out: Optional[dict] = None) -> dict[str, dict]:
    """Qualified layer name -> the layer's entry in ``config`` (nested models' entries included)."""
    out = {} if out is None else out
    for entry in config["layers"]:
        name = prefix + entry["config"]["name"]
        out[name] = entry
        if entry.get("class_name") in ("Functional", "Sequential", "Model") and "layers" in entry["config"]:
            _layer_configs(entry["config"], name + "/", out)
    return out


def _drop_build_configs(config) -> None:
    """Removes Keras' recorded ``build_config`` (input shapes) everywhere: the layers rebuild at the new widths."""
    if isinstance(config, dict):
        config.pop("build_config", None)
        for value in config.values():
            _drop_build_configs(value)
    elif isinstance(config, list):
        for value in config:
            _drop_build_configs(value)


def _set_last_dim(config: dict, key: str, width: int) -> None:
    if isinstance(config.get(key), (list, tuple)) and config[key]:
        config[key] = list(config[key])[:-1] + [int(width)]


def _fix_nested_inputs(config: dict, graph, masks, prefix: str = "") -> None:
    """Input shapes recorded inside nested models follow the channels pruned in front of them."""
    for entry in config["layers"]:
        cls, cfg = entry.get("class_name"), entry["config"]
        name = prefix + cfg["name"]
        if cls not in ("Functional", "Sequential", "Model") or "layers" not in cfg:
            continue
        cfg.pop("build_input_shape", None)
        inner = cfg["layers"]
        if cls == "Sequential":
            first = next((e for e in inner if e.get("class_name") != "InputLayer"), None)
            src = graph.layer_inputs.get(name + "/" + first["config"]["name"], [None])[0] if first else None
            if src in masks:
                for e in inner:
                    if e.get("class_name") == "InputLayer" or e is first:
                        _set_last_dim(e["config"], "batch_input_shape", masks[src].sum())
        else:
            for e in inner:
                q = name + "/" + e["config"]["name"]
                if e.get("class_name") == "InputLayer" and q in masks:
                    _set_last_dim(e["config"], "batch_input_shape", masks[q].sum())
        _fix_nested_inputs(cfg, graph, masks, name + "/")


def _zero_initializers(layer_config: dict) -> None:
    for key, value in layer_config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and "class_name" in value:
            layer_config[key] = {"class_name": "Zeros", "config": {}}


def _reseed_initializers(layer_config: dict, seed: int) -> None:
    for key, value in layer_config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and isinstance(value.get("config"), dict) \
                and "seed" in value["config"]:
            value["config"]["seed"] = seed


def custom_objects_of(model: tf.keras.Model) -> dict:
    """Every layer class in ``model`` (nested models too) by class name and registered Keras name."""
    objects = {}
    stack = [model]
    while stack:
        layer = stack.pop()
        cls = type(layer)
        objects.setdefault(cls.__name__, cls)
        registered = tf.keras.utils.get_registered_name(cls)
        objects.setdefault(registered, cls)
        if isinstance(layer, tf.keras.Model):
            stack.extend(layer.layers)
    return objects


def _slice_constant(value, keep: np.ndarray):
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.size <= 1 or arr.shape[-1] != keep.size:
        return value
    return np.compress(keep, arr, axis=-1).tolist()


def _edit_config(entry: dict, layer, graph, masks, name: str) -> None:
    """Channel-count fields of one layer's config entry that follow the plan (besides filters/units)."""
    in_keep, out_keep = layer_masks(graph, masks, name)
    cfg = entry["config"]
    t = type(layer)
    if t is L.Conv2D and layer.groups > 1 and in_keep.size == layer.groups:  # depthwise-like
        cfg["groups"] = int(in_keep.sum())
    elif isinstance(layer, L.GroupNormalization) and not in_keep.all():  # whole groups go (graph ties them)
        cfg["groups"] = int(in_keep.sum()) // (in_keep.size // int(layer.groups))
    elif t is L.Reshape and not out_keep.all():
        cfg["target_shape"] = list(cfg["target_shape"])[:-1] + [int(out_keep.sum())]
    elif t is TFOpLambda and not in_keep.all():
        for node in entry.get("inbound_nodes", []):
            calls = [node] if node and isinstance(node[0], str) else node  # TF ops keep their input structure
            for call in calls:
                if isinstance(call, list) and len(call) > 3 and isinstance(call[3], dict):
                    for key, value in call[3].items():
                        if key != "name" and isinstance(value, list):
                            call[3][key] = _slice_constant(value, in_keep)


def prune_model(model: tf.keras.Model, plan: PlanLike, weights: str = "inherit",
                seed: Optional[int] = None, custom_objects: Optional[Mapping[str, object]] = None) -> tf.keras.Model:
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
      custom_objects: extra ``{name: class or function}`` for deserializing the model's config
        (every layer class found in ``model`` is already known).

    Returns:
      a new ``tf.keras.Model`` with the same layer names (nested models stay nested) and
      ``plan.params_after`` parameters; ``model`` is not modified.

    Raises:
      ValueError: unknown weights mode, a plan for another model, bad keep indices.
      UnsupportedLayerError: a keep entry names a layer whose channels cannot be pruned, or the
        model's config cannot be rebuilt (the message names the layer or the error).
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be 'inherit' or 'reinit', got {weights!r}")
    plan = _as_plan(model, plan)
    masks = plan.keep_masks()
    config = copy.deepcopy(model.get_config())
    configs = _layer_configs(config)
    graph = plan.graph
    for name, width in plan.widths_after.items():
        key = "units" if type(graph.layers[name]) is L.Dense else "filters"
        configs[name]["config"][key] = int(width)
    for name, layer in graph.layers.items():
        if name in configs:
            _edit_config(configs[name], layer, graph, masks, name)
    if weights == "inherit":  # every weight is overwritten below: skip drawing random initial values
        for name, layer in graph.layers.items():
            if name in configs and layer.weights:
                _zero_initializers(configs[name]["config"])
    if weights == "reinit" and seed is not None:
        for i, name in enumerate(graph.layers):
            if name in configs:
                _reseed_initializers(configs[name]["config"], int(seed) + i)
    _fix_nested_inputs(config, graph, masks)
    _drop_build_configs(config)
    objects = custom_objects_of(model)
    objects.update(custom_objects or {})
    try:
        with tf.keras.utils.custom_object_scope(objects):
            new = model.__class__.from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise UnsupportedLayerError(f"could not rebuild {model.name!r} from its config after pruning "
                                    f"({type(e).__name__}: {e}); pass custom_objects= for custom layers") from e
    if weights == "inherit":
        pairs = []
        new_layers, own_layers = leaf_layers(new), leaf_layers(model)
        for name, layer in graph.layers.items():
            if layer.weights:
                in_keep, out_keep = layer_masks(graph, masks, name)
                target = new_layers[name]
                # ``model``'s own values: the plan may have been made on a copy of it (same names and shapes)
                values = slice_weights(own_layers[name], in_keep, out_keep)
                if len(values) != len(target.weights):
                    raise UnsupportedLayerError(f"{name!r} ({type(layer).__name__}) has {len(target.weights)} "
                                                f"weights after the rebuild, {len(values)} sliced")
                for variable, value in zip(target.weights, values):
                    if tuple(variable.shape) != value.shape:
                        raise UnsupportedLayerError(f"{name!r} ({type(layer).__name__}): weight {variable.name} "
                                                    f"is {tuple(variable.shape)} after the rebuild, {value.shape} "
                                                    f"sliced")
                    pairs.append((variable, value))
        tf.keras.backend.batch_set_value(pairs)
    return new


def mask_model(model: tf.keras.Model, plan: PlanLike,
               custom_objects: Optional[Mapping[str, object]] = None) -> tf.keras.Model:
    """A same-shaped copy of ``model`` in which the plan's channels are exactly zero.

    For every removed channel, its producers' kernel slices and biases are zeroed, and so
    are the BatchNormalization gamma and beta and the DepthwiseConv2D kernel and bias of
    that channel (see :func:`tff_prune.pruning.slicing.zero_removed`).

    Raises:
      ValueError, UnsupportedLayerError: as :func:`prune_model`.
    """
    plan = _as_plan(model, plan)
    masks = plan.keep_masks()
    config = copy.deepcopy(model.get_config())
    configs = _layer_configs(config)
    for name, layer in plan.graph.layers.items():
        if name in configs and layer.weights:
            _zero_initializers(configs[name]["config"])
    _drop_build_configs(config)
    objects = custom_objects_of(model)
    objects.update(custom_objects or {})
    with tf.keras.utils.custom_object_scope(objects):
        masked = model.__class__.from_config(config)
    tf.keras.backend.batch_set_value(list(zip(masked.weights, model.get_weights())))
    masked_layers = leaf_layers(masked)
    for name in plan.graph.layers:
        in_keep, out_keep = layer_masks(plan.graph, masks, name)
        zero_removed(masked_layers[name], in_keep, out_keep)
    return masked
