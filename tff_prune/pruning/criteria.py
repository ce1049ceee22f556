"""Filter importance and the paper's band criterion.

Importance of filter ``j`` of a Conv2D with kernel ``W`` (shape ``(kh, kw, c_in, c_out)``)
is its L1 norm ``s_j = sum |W[:, :, :, j]|`` (bias ignored), as in the authors' public
code (Nguyen, Le, Avila 2024, arXiv 2411.01759, Sec. III-B). Per layer, with
``mu`` the mean and ``sigma`` the population standard deviation of ``s``, a filter is
kept iff ``mu - k*sigma <= s_j <= mu + k*sigma``: unusually weak *and* unusually
strong filters are removed.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from tff_prune.pruning.graph import channel_paths


def l1_filter_norms(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """L1 norm of every filter of every prunable Conv2D.

    Args:
      model: a Keras model (see :func:`tff_prune.pruning.graph.channel_paths` for
        which Conv2D layers are prunable).

    Returns:
      dict from layer name to a float64 array of shape ``(filters,)``, in model order.
    """
    out = {}
    for name in channel_paths(model):
        kernel = model.get_layer(name).kernel.numpy().astype(np.float64)
        out[name] = np.abs(kernel).sum(axis=(0, 1, 2))
    return out


def band_keep_mask(norms: np.ndarray, k: float) -> np.ndarray:
    """Keep-mask of the band criterion ``mu - k*sigma <= s <= mu + k*sigma``.

    Args:
      norms: 1-D array of filter importances, shape ``(filters,)``, finite, any float dtype.
      k: band half-width in standard deviations, > 0 (paper: 2.0-2.5).

    Returns:
      bool array of shape ``(filters,)``. ``sigma`` is the population standard deviation
      (``ddof=0``), computed in float64; bounds are inclusive, with a relative slack of
      1e-12 so equal norms (``sigma = 0``) are all kept. At least one filter is always
      kept: if the band is empty (possible only for k < 1), the filter nearest ``mu``.

    Raises:
      ValueError: ``k <= 0``, ``norms`` empty, not 1-D, or not finite.
    """
    s = np.asarray(norms, dtype=np.float64)
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k!r}")
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"norms must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("norms contain NaN or infinity; the model's weights have diverged")
    mu, sigma = s.mean(), s.std()
    slack = 1e-12 * max(1.0, float(np.abs(s).max()))
    keep = (s >= mu - k * sigma - slack) & (s <= mu + k * sigma + slack)
    if not keep.any():
        keep[np.argmin(np.abs(s - mu))] = True
    return keep


def band_selection(model: tf.keras.Model, k: float) -> dict[str, np.ndarray]:
    """Filters to keep in every prunable Conv2D under the band criterion.

    Returns:
      dict from layer name to the sorted int64 indices of kept filters (at least one each).
    """
    return {name: np.flatnonzero(band_keep_mask(s, k)) for name, s in l1_filter_norms(model).items()}


def widths_after(model: tf.keras.Model, keep: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Filter count of every prunable Conv2D after keeping ``keep`` (others unchanged)."""
    return {name: int(len(keep[name])) if name in keep else int(model.get_layer(name).filters)
            for name in channel_paths(model)}
