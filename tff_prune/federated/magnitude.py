"""Unstructured magnitude pruning (tfmot ``prune_low_magnitude``) trained federatedly: the baseline.

The paper prunes whole filters because a zeroed weight inside a dense kernel saves no time
without sparse kernels. This module is the other side of that comparison: the
tensorflow-model-optimization pruning API (``tfmot.sparsity.keras.prune_low_magnitude`` with a
``PolynomialDecay`` schedule, https://www.tensorflow.org/model_optimization/guide/pruning)
inside TFF's FedAvg, with the masks decided on the server.

How it runs (``loop.run`` with ``method="magnitude"``):

- Every prunable layer (Conv2D and Dense kernels; biases are never pruned) is wrapped. The
  wrapper keeps a ``mask`` and ``threshold`` per kernel and a ``pruning_step`` counter, all
  non-trainable, so TFF broadcasts them to the clients and never aggregates them.
- After each round's FedAvg aggregate, the server (:func:`server_update`) sets the
  wrappers' ``pruning_step`` to ``round * STEP_STRIDE`` and runs tfmot's own mask update:
  the schedule gives the sparsity of that round, tfmot keeps the largest-magnitude
  weights of each kernel and multiplies the kernel by the mask.
- Clients train under the broadcast mask: tfmot's wrapper multiplies each kernel by its
  mask before every batch. Each batch also increments ``pruning_step`` and would let tfmot
  recompute the mask on the client when the step is a "pruning turn"; the schedule's
  frequency is ``STEP_STRIDE`` and the server broadcasts ``round * STEP_STRIDE + 1``, so a
  client never reaches a turn within fewer than ``STEP_STRIDE - 1`` local batches and all
  clients share the server's mask. (Measured: after one local epoch the masked weights of
  an aggregate moved about 1/7 as much as the kept ones - only the last batch's step,
  which the server masks again.)
- The schedule: ``PolynomialDecay(initial_sparsity=0, final_sparsity=s, begin_step=0,
  end_step=end_round * STEP_STRIDE, frequency=STEP_STRIDE)``, i.e. after round ``r``
  the sparsity is ``s * (1 - (1 - r / end_round) ** 3)`` (tfmot's formula, power 3) and ``s``
  from ``end_round`` on.
- The final model is ``tfmot.sparsity.keras.strip_pruning``: the original architecture
  with zeros in its kernels; every parameter is still stored and computed.

``tfmot`` counts sparsity per kernel; :func:`sparsity_for_params` turns "as many non-zero
parameters as the structured result" into that per-kernel sparsity.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

# Server steps are round * STEP_STRIDE; a client would need this many local batches in one round to reach a
# pruning turn of the schedule on its own.
STEP_STRIDE = 1_000_000


def is_wrapper(layer) -> bool:
    """True for tfmot's ``PruneLowMagnitude`` wrapper (not exported by tfmot's public API: matched by name)."""
    return type(layer).__name__ == "PruneLowMagnitude"


def is_pruning_model(model: tf.keras.Model) -> bool:
    """True if ``model`` contains tfmot pruning wrappers."""
    return any(is_wrapper(layer) for layer in model.layers)


def schedule(target_sparsity: float, end_round: int) -> tfmot.sparsity.keras.PolynomialDecay:
    """tfmot's polynomial-decay schedule over rounds (see module doc).

    Raises:
      ValueError: ``target_sparsity`` outside [0, 1) or ``end_round`` < 1.
    """
    if not 0 <= target_sparsity < 1:
        raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity!r}")
    if end_round < 1:
        raise ValueError(f"the last round of the sparsity schedule must be >= 1, got {end_round!r}")
    return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(target_sparsity),
                                                begin_step=0, end_step=end_round * STEP_STRIDE,
                                                frequency=STEP_STRIDE)


def wrap(model: tf.keras.Model, target_sparsity: float, end_round: int) -> tf.keras.Model:
    """``prune_low_magnitude(model)`` with :func:`schedule`; weights carried over, masks all ones.

    The wrappers' ``pruning_step`` is set to 1 (a client step, not a pruning turn), so the model can
    be trained before the first :func:`server_update`. tfmot wraps ``model``'s own layer objects, so
    the returned model shares its kernels with ``model``: masking one zeroes the other's.
    """
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule(target_sparsity, end_round))
    _set_step(wrapped, 1)
    return wrapped


def builder(architecture: tf.keras.Model, target_sparsity: float, end_round: int) -> Callable[[], tf.keras.Model]:
    """A model builder for TFF: a fresh copy of ``architecture`` (unwrapped), wrapped by :func:`wrap`."""
    config, cls = architecture.get_config(), architecture.__class__
    return lambda: wrap(cls.from_config(config), target_sparsity, end_round)


def _set_step(model: tf.keras.Model, step: int) -> None:
    for layer in model.layers:
        if is_wrapper(layer):
            layer.pruning_step.assign(step)


def server_update(model: tf.keras.Model, round_num: int) -> float:
    """The server's mask update after round ``round_num``'s aggregate (in place); returns the kernels' sparsity.

    Runs tfmot's ``conditional_mask_update`` at step ``round_num * STEP_STRIDE`` (a pruning turn
    while ``round_num <= end_round``; afterwards the mask stays) and its ``weight_mask_op``, then
    sets the step clients receive to ``round_num * STEP_STRIDE + 1``.
    """
    for layer in model.layers:
        if is_wrapper(layer):
            layer.pruning_step.assign(round_num * STEP_STRIDE)
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()
    _set_step(model, round_num * STEP_STRIDE + 1)
    return kernel_sparsity(model)


def _kernels(model: tf.keras.Model) -> list[tf.Variable]:
    out = []
    for layer in model.layers:
        if is_wrapper(layer):
            out += [w for w, _, _ in layer.pruning_vars]
    return out


def kernel_sparsity(model: tf.keras.Model) -> float:
    """Fraction of exact zeros over all wrapped kernels of a pruning model (0.0 if none are wrapped)."""
    kernels = _kernels(model)
    total = sum(int(np.prod(k.shape)) for k in kernels)
    return float(sum(int(np.sum(k.numpy() == 0)) for k in kernels) / total) if total else 0.0


def count_nonzero_params(model: tf.keras.Model) -> int:
    """Non-zero entries over all trainable weights of ``model`` (wrapped or stripped), the parameters one must store."""
    return int(sum(int(np.count_nonzero(v.numpy())) for v in model.trainable_weights))


def prunable_kernel_params(model: tf.keras.Model) -> int:
    """Entries of the kernels ``prune_low_magnitude`` would prune in the unwrapped ``model`` (Conv2D/Dense...)."""
    probe = tfmot.sparsity.keras.prune_low_magnitude(model.__class__.from_config(model.get_config()))
    return int(sum(int(np.prod(k.shape)) for k in _kernels(probe)))


def sparsity_for_params(model: tf.keras.Model, target_params: int) -> float:
    """Per-kernel sparsity leaving ``model`` (unwrapped) with about ``target_params`` non-zero parameters.

    ``(params - target_params) / prunable kernel entries``; biases and other weights are kept, so
    the result is approximate to tfmot's per-kernel rounding.

    Raises:
      ValueError: ``target_params`` is not below the parameter count, or cannot be reached by pruning
        kernels alone.
    """
    from tff_prune.accounting import count_params

    total, prunable = count_params(model), prunable_kernel_params(model)
    if not 0 < target_params < total:
        raise ValueError(f"target of {target_params:,} non-zero parameters must be in (0, {total:,})")
    s = (total - target_params) / prunable
    if s >= 1:
        raise ValueError(f"{target_params:,} non-zero parameters cannot be reached by pruning kernels only "
                         f"({total - prunable:,} parameters are not prunable)")
    return float(s)


def strip(model: tf.keras.Model) -> tf.keras.Model:
    """``tfmot.sparsity.keras.strip_pruning``: the original layers with the masked (sparse) kernels."""
    return tfmot.sparsity.keras.strip_pruning(model)

