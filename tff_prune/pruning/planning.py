"""PruningPlan: which channels of which dependency groups go, and what that predicts.

:func:`plan` scores every prunable group (aggregate of its producers' filter L1 norms),
applies a criterion per group, then enforces ``min_channels`` and ``round_to`` (rounding
up puts back the most important removed channels; rounding down removes the least
important kept ones). :func:`plan_from_channels` and
:func:`plan_from_keep` build plans from explicit indices (tests, reproductions,
the CNN API of the first release: ``{conv name: kept filter indices}``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tff_prune.pruning.criteria import AGGREGATES, Criterion, filter_l1
from tff_prune.pruning.graph import (DependencyGraph, DependencyGroup, UnsupportedLayerError, dependency_graph,
                                     resolve_layer)
from tff_prune.pruning.slicing import slice_weights

L = tf.keras.layers


@dataclasses.dataclass(frozen=True)
class PlannedGroup:
    """A dependency group with the plan's decision.

    Attributes:
      group: the :class:`~tff_prune.pruning.graph.DependencyGroup` (structure).
      pruned_channels: sorted int64 canonical channel indices removed (may be empty).
      importance: float64 ``(channels,)`` importance used, or None for explicit plans.
    """

    group: DependencyGroup
    pruned_channels: np.ndarray
    importance: Optional[np.ndarray] = None

    @property
    def id(self) -> int:
        """The group's id in the dependency graph."""
        return self.group.id

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the member layers whose weights are sliced."""
        return self.group.layers

    @property
    def producers(self) -> tuple[str, ...]:
        """Layers whose filters are the group's channels."""
        return self.group.producers

    @property
    def channels(self) -> int:
        """Channels before pruning."""
        return self.group.channels

    @property
    def kept(self) -> int:
        """Channels after pruning."""
        return self.group.channels - len(self.pruned_channels)

    def kept_filters(self, producer: str) -> np.ndarray:
        """Sorted filter indices of ``producer`` that survive (int64)."""
        keep = np.ones(self.channels, dtype=bool)
        keep[self.pruned_channels] = False
        positions = self.group.producer_positions.get(producer)
        if positions is None:
            positions = self.group.producer_index[producer][:, None]
        return np.sort(positions[keep].ravel())


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """Channels to remove from a model, with predicted sizes.

    Attributes:
      graph: the model's :class:`~tff_prune.pruning.graph.DependencyGraph`.
      groups: one :class:`PlannedGroup` per *prunable* dependency group, in model order.
      barriers: layer -> reason it blocks pruning (from the graph).
      params_before / params_after: parameter count of the model and of the pruned model.
      widths_before / widths_after: output channels of every producer layer (Conv2D,
        SeparableConv2D, Dense), by name.
      criterion: description of how the plan was made.
    """

    graph: DependencyGraph
    groups: list
    barriers: dict
    params_before: int
    params_after: int
    widths_before: dict
    widths_after: dict
    criterion: str

    @property
    def pruned(self) -> dict[int, np.ndarray]:
        """Group id -> removed canonical channels, only groups with removals."""
        return {g.id: g.pruned_channels for g in self.groups if len(g.pruned_channels)}

    @property
    def is_empty(self) -> bool:
        """True if the plan removes nothing."""
        return not self.pruned

    def keep_masks(self) -> dict[str, np.ndarray]:
        """Layer name -> bool keep-mask over its output's last axis (see ``DependencyGraph.keep_masks``)."""
        return self.graph.keep_masks(self.pruned)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (groups with members and removed channels)."""
        return {"criterion": self.criterion, "params_before": self.params_before, "params_after": self.params_after,
                "widths_before": self.widths_before, "widths_after": self.widths_after,
                "barriers": self.barriers,
                "groups": [{"id": g.id, "channels": g.channels, "kept": g.kept, "producers": list(g.producers),
                            "layers": list(g.layers), "pruned_channels": [int(i) for i in g.pruned_channels]}
                           for g in self.groups]}


def layer_masks(graph: DependencyGraph, masks: Mapping[str, np.ndarray],
                layer: Union[tf.keras.layers.Layer, str]) -> tuple[np.ndarray, np.ndarray]:
    """(input keep-mask, output keep-mask) of ``layer`` (a layer, or its qualified name in ``graph``).

    Inputs of multi-input layers are all kept (no multi-input layer has weights on its inputs).
    """
    name = layer if isinstance(layer, str) else layer.name
    ins = graph.layer_inputs.get(name, [])
    out = masks[name]
    if len(ins) == 1:
        return masks[ins[0]], out
    return np.ones(0 if not ins else graph.channels[ins[0]], dtype=bool), out


def _predict(model: tf.keras.Model, graph: DependencyGraph, masks: Mapping[str, np.ndarray]) -> int:
    total = 0
    for name, layer in graph.layers.items():
        if not layer.weights:
            continue
        in_keep, out_keep = layer_masks(graph, masks, name)
        if in_keep.all() and out_keep.all():
            total += int(layer.count_params())
            continue
        total += sum(int(w.size) for w in slice_weights(layer, in_keep, out_keep))
    return total


def _widths(graph: DependencyGraph, masks: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, int]:
    out = {}
    for name, layer in graph.layers.items():
        if type(layer) in (L.Conv2D, L.SeparableConv2D, L.Dense):
            out[name] = int(masks[name].sum()) if masks is not None else int(graph.channels[name])
    return out


def _finish(model, graph, decisions: dict[int, tuple[np.ndarray, Optional[np.ndarray]]], criterion: str):
    groups = []
    for g in graph.groups:
        if not g.prunable:
            continue
        pruned, importance = decisions.get(g.id, (np.zeros(0, dtype=np.int64), None))
        groups.append(PlannedGroup(g, np.sort(np.asarray(pruned, dtype=np.int64)), importance))
    pruned = {g.id: g.pruned_channels for g in groups if len(g.pruned_channels)}
    masks = graph.keep_masks(pruned)
    return PruningPlan(graph=graph, groups=groups, barriers=dict(graph.barriers),
                       params_before=int(model.count_params()), params_after=_predict(model, graph, masks),
                       widths_before=_widths(graph), widths_after=_widths(graph, masks), criterion=criterion)


def group_importance(model: tf.keras.Model, group: DependencyGroup, aggregate: str = "sum") -> np.ndarray:
    """Importance of each canonical channel of ``group``: aggregate of its producers' filter L1 norms.

    Every producer of the group counts (a residual stage's convs and shortcuts, an SE block's
    gate conv); a channel that a grouped convolution ties to index ``j`` of every group scores
    the sum of those filters' norms.

    Returns:
      float64 array ``(group.channels,)``.

    Raises:
      ValueError: unknown ``aggregate`` (one of 'sum', 'mean', 'max').
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(AGGREGATES)}, got {aggregate!r}")
    scores = []
    for p in group.producers:
        positions = group.producer_positions.get(p)
        if positions is None:
            positions = group.producer_index[p][:, None]
        scores.append(filter_l1(resolve_layer(model, p))[positions].sum(axis=1))
    return AGGREGATES[aggregate](np.stack(scores), axis=0)


def batchnorm_scale_importance(model: tf.keras.Model, graph: DependencyGraph, group: DependencyGroup) -> np.ndarray:
    """Network slimming's importance (Liu et al., ICCV 2017): ``|gamma|`` of the group's BatchNormalizations.

    The sum over every BatchNormalization (and GroupNormalization) with a scale in the group (a channel
    that several such layers normalize scores the sum of its ``|gamma|``; a channel that GroupNorm ties
    to its group scores the sum over the group). A group without one scores by
    :func:`group_importance` (filter L1), so every group gets a score.

    Returns:
      float64 array ``(group.channels,)``.
    """
    total = np.zeros(group.channels, dtype=np.float64)
    found = False
    for name in group.channel_wise:
        layer = graph.layers.get(name)
        if (type(layer) is L.BatchNormalization or isinstance(layer, L.GroupNormalization)) and layer.scale:
            gamma = np.abs(layer.gamma.numpy().astype(np.float64))
            total += gamma[graph.positions(group, graph.layer_inputs[name][0])].sum(axis=1)
            found = True
    return total if found else group_importance(model, group)


def l1_importance(model: tf.keras.Model, graph: DependencyGraph, group: DependencyGroup) -> np.ndarray:
    """The default importance: :func:`group_importance` (sum of the producers' filter L1 norms)."""
    return group_importance(model, group)


def l1_and_batchnorm_importance(model: tf.keras.Model, graph: DependencyGraph, group: DependencyGroup) -> np.ndarray:
    """Filter L1 times BatchNormalization ``|gamma|`` (each normalized to mean 1 in the group), per channel."""
    a = group_importance(model, group)
    b = batchnorm_scale_importance(model, graph, group)
    return a / max(a.mean(), 1e-30) * (b / max(b.mean(), 1e-30))


IMPORTANCES: dict[str, Callable] = {"l1": l1_importance, "bn_scale": batchnorm_scale_importance,
                                    "l1_bn_scale": l1_and_batchnorm_importance}


def _importance_fn(importance, aggregate: str) -> Callable:
    if importance is None or importance == "l1":
        return lambda model, graph, group: group_importance(model, group, aggregate)
    if isinstance(importance, str):
        if importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {sorted(IMPORTANCES)} or a callable, got {importance!r}")
        return IMPORTANCES[importance]
    if not callable(importance):
        raise ValueError(f"importance must be one of {sorted(IMPORTANCES)} or a callable, got {importance!r}")
    return importance


ROUND_MODES = ("up", "down")  # see plan(); "final" (config only) rounds down once when pruning stops


def plan(model: tf.keras.Model, criterion: Criterion, *, min_channels: int = 1, round_to: int = 1,
         aggregate: str = "sum", include_dense: bool = False, round_mode: str = "down",
         importance: Union[None, str, Callable] = None) -> PruningPlan:
    """Plans a structured prune of ``model`` with ``criterion`` applied to every prunable group.

    Args:
      model: a functional or Sequential Keras model.
      criterion: :func:`~tff_prune.pruning.band`, :func:`~tff_prune.pruning.band_low` or
        :func:`~tff_prune.pruning.ratio`.
      min_channels: fewest channels a group keeps (>= 1).
      round_to: each group keeps a multiple of this many channels (>= 1). 8 suits XNNPACK's SIMD
        kernels.
      round_mode: ``"down"`` (the default, Torch-Pruning's ``round_to``): every group ends at
        the multiple at or below what the criterion keeps (at least ``round_to``, and
        ``min_channels`` rounded up) by also removing its least important kept channels; with
        ``ratio(0)`` this only trims groups whose width is not a multiple. ``"up"``: put back the
        most important removed channels up to the next multiple (a group whose width is below it
        keeps all its channels); a criterion that removes fewer than ``round_to`` channels of a
        group then removes none.
      aggregate: how producers' filter norms combine into a channel's importance (default
        importance only).
      importance: how channels are scored, per group: None or ``"l1"`` (the producers' filter L1
        norms, :func:`group_importance`), ``"bn_scale"`` (BatchNormalization ``|gamma|``, network
        slimming: :func:`batchnorm_scale_importance`), ``"l1_bn_scale"`` (their product), or a
        callable ``importance(model, graph, group) -> float array (group.channels,)`` (higher =
        more important).
      include_dense: also prune groups produced only by Dense layers (hidden units). Off by
        default: the paper prunes convolution filters only.

    Returns:
      a :class:`PruningPlan` (``params_after`` is exact for the pruned model).

    Raises:
      ValueError: ``min_channels`` or ``round_to`` < 1, unknown ``aggregate``, ``round_mode`` or
        ``importance``, or an importance callable that returns the wrong shape or non-finite values.
      UnsupportedLayerError: the model is subclassed.
    """
    if round_mode not in ROUND_MODES:
        raise ValueError(f"round_mode must be one of {ROUND_MODES}, got {round_mode!r}")
    if int(min_channels) != min_channels or min_channels < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(AGGREGATES)}, got {aggregate!r}")
    score = _importance_fn(importance, aggregate)
    graph = dependency_graph(model)
    decisions = {}
    for g in graph.groups:
        if not g.prunable:
            continue
        if not include_dense and all(type(graph.layers[p]) is L.Dense for p in g.producers):
            continue
        s = np.asarray(score(model, graph, g), dtype=np.float64)
        if s.shape != (g.channels,) or not np.all(np.isfinite(s)):
            raise ValueError(f"importance for group {g.id} must be {g.channels} finite floats, got shape {s.shape}")
        keep = criterion.keep_mask(s)
        target = max(int(keep.sum()), min(int(min_channels), g.channels))
        if round_to > 1 and round_mode == "down" and (target < g.channels or g.channels % round_to):
            least = math.ceil(max(int(min_channels), 1) / round_to) * round_to
            target = min(g.channels, max(target // round_to * round_to, least))
        elif round_to > 1:
            target = min(g.channels, math.ceil(target / round_to) * round_to)
            if target % round_to:
                target = g.channels
        if keep.sum() < target:
            removed = np.flatnonzero(~keep)
            back = removed[np.argsort(-s[removed], kind="stable")][:target - int(keep.sum())]
            keep[back] = True
        elif keep.sum() > target:
            kept = np.flatnonzero(keep)
            keep[kept[np.argsort(s[kept], kind="stable")][:int(keep.sum()) - target]] = False
        decisions[g.id] = (np.flatnonzero(~keep), s)
    name = importance if isinstance(importance, str) else getattr(importance, "__name__", "l1")
    desc = (f"{criterion}, min_channels={min_channels}, round_to={round_to}"
            + (f" ({round_mode})" if round_to > 1 else "") + f", aggregate={aggregate}"
            + (f", importance={name}" if importance not in (None, "l1") else ""))
    return _finish(model, graph, decisions, desc)


def _group_for(graph: DependencyGraph, key: Union[int, str]) -> DependencyGroup:
    if isinstance(key, (int, np.integer)):
        if not 0 <= key < len(graph.groups):
            raise ValueError(f"group id {key} out of range [0, {len(graph.groups)})")
        return graph.groups[int(key)]
    g = graph.group_of(key)
    if g is None or key not in g.producers:
        producers = [p for grp in graph.groups if grp.prunable for p in grp.producers]
        raise ValueError(f"{key!r} is not a layer that produces prunable channels; such layers: {producers}")
    return g


def _check(group: DependencyGroup, idx, what: str, limit: Optional[int] = None) -> np.ndarray:
    if not group.prunable:
        raise UnsupportedLayerError(f"group {group.id} ({', '.join(group.tensors[:3])}...) cannot be pruned: "
                                    f"{group.reason}")
    arr = np.asarray(idx)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D sequence of integer channel indices, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    limit = group.channels if limit is None else limit
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        bad = arr[(arr < 0) | (arr >= limit)]
        raise ValueError(f"{what} has indices outside [0, {limit}): {bad}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{what} has duplicate indices")
    return arr


def plan_from_channels(model: tf.keras.Model, pruned: Mapping[Union[int, str], Sequence[int]]) -> PruningPlan:
    """A plan that removes the given canonical channels.

    Args:
      pruned: group id, or the name of a producer layer of the group, -> channel indices
        to remove (for a producer name: that producer's filter indices).

    Raises:
      ValueError: unknown group/layer, bad indices, or a group would lose every channel.
      UnsupportedLayerError: the group is not prunable (the message gives the reason).
    """
    graph = dependency_graph(model)
    decisions = {}
    for key, idx in pruned.items():
        g = _group_for(graph, key)
        if isinstance(key, str):
            arr = _check(g, idx, f"pruned[{key!r}]", limit=graph.channels[key])
            positions = g.producer_positions.get(key, g.producer_index[key][:, None])
            canonical = np.full(graph.channels[key], -1, dtype=np.int64)
            for k, row in enumerate(positions):
                canonical[row] = k
            arr = np.unique(canonical[arr])  # a filter removes its whole coupled channel
            arr = arr[arr >= 0]
        else:
            arr = _check(g, idx, f"pruned[{key!r}]")
        if len(arr) >= g.channels:
            raise ValueError(f"pruned[{key!r}] removes all {g.channels} channels; at least one must stay")
        decisions[g.id] = (arr, None)
    return _finish(model, graph, decisions, "explicit")


def plan_from_keep(model: tf.keras.Model, keep: Mapping[str, Sequence[int]]) -> PruningPlan:
    """A plan from ``{producer layer: filter indices to keep}`` (the first release's CNN API).

    Raises:
      ValueError: as :func:`plan_from_channels`; an empty keep list.
      UnsupportedLayerError: the layer's channels cannot be pruned.
    """
    graph = dependency_graph(model)
    pruned = {}
    for name, idx in keep.items():
        if name not in graph.layers:
            raise ValueError(f"keep names layer {name!r}, which is not in the model")
        g = graph.group_of(name)
        if g is None or name not in g.producers:
            raise UnsupportedLayerError(f"layer {name!r} cannot be pruned: it produces no channels")
        arr = _check(g, idx, f"keep[{name!r}]", limit=graph.channels[name])
        if arr.size == 0:
            raise ValueError(f"keep[{name!r}] is empty; at least one filter must stay")
        pruned[name] = np.setdiff1d(np.arange(graph.channels[name]), arr)
    return plan_from_channels(model, pruned)
