"""Channel importance and pruning criteria.

Importance of filter ``j`` of a producer is the L1 norm of its kernel slice (bias
ignored), as in the authors' public code (Nguyen, Le, Avila 2024, arXiv 2411.01759,
Sec. III-B): Conv2D ``sum |W[:, :, :, j]|``, SeparableConv2D its pointwise kernel
``sum |P[:, :, :, j]|``, Dense ``sum |W[:, j]|``. A dependency group's channel importance
aggregates its producers' filter norms (default: sum), so a residual stage's channel
counts the filters of every conv that writes into it.

Criteria (the fraction and band are computed per group, as the paper does per layer):

- :func:`band` — the paper's: with ``mu`` the mean and ``sigma`` the population standard
  deviation of a group's importances, keep channel ``j`` iff
  ``mu - k*sigma <= s_j <= mu + k*sigma`` (unusually weak *and* strong channels go).
- :func:`band_low` — the band's lower bound only: keep channel ``j`` iff ``s_j >= mu - k*sigma``
  (only unusually weak channels go; not in the paper: on inherited weights the paper's upper
  tail removes the strongest filters every round, see docs/RESULTS.md).
- :func:`ratio` — remove the ``floor(r * channels)`` least important channels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

L = tf.keras.layers
AGGREGATES = {"sum": np.sum, "mean": np.mean, "max": np.max}


def filter_l1(layer: tf.keras.layers.Layer) -> np.ndarray:
    """L1 norm of each output filter of a producer layer, float64 ``(filters,)``.

    Raises:
      ValueError: ``layer`` is not a Conv2D, SeparableConv2D or Dense.
    """
    t = type(layer)
    if t in (L.Conv2D, L.Dense):
        kernel = layer.kernel.numpy()
    elif t is L.SeparableConv2D:
        kernel = layer.pointwise_kernel.numpy()
    else:
        raise ValueError(f"{layer.name!r} ({t.__name__}) has no filters to score")
    kernel = kernel.astype(np.float64)
    return np.abs(kernel.reshape(-1, kernel.shape[-1])).sum(axis=0)


def band_keep_mask(norms: np.ndarray, k: float, tails: str = "both") -> np.ndarray:
    """Keep-mask of the band criterion ``mu - k*sigma <= s <= mu + k*sigma``.

    Args:
      norms: 1-D array of importances, shape ``(channels,)``, finite, any float dtype.
      k: band half-width in standard deviations, > 0 (paper: 2.0-2.5).
      tails: ``"both"`` (the paper's) or ``"low"`` (no upper bound: keep ``s >= mu - k*sigma``).

    Returns:
      bool array of shape ``(channels,)``. ``sigma`` is the population standard deviation
      (``ddof=0``), computed in float64; bounds are inclusive, with a relative slack of
      1e-12 so equal norms (``sigma = 0``) are all kept. At least one channel is always
      kept: if the band is empty (possible only for k < 1), the one nearest ``mu``.

    Raises:
      ValueError: ``k <= 0``, ``tails`` not "both"/"low", ``norms`` empty, not 1-D, or not finite.
    """
    s = np.asarray(norms, dtype=np.float64)
    if tails not in ("both", "low"):
        raise ValueError(f"tails must be 'both' or 'low', got {tails!r}")
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k!r}")
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"norms must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("norms contain NaN or infinity; the model's weights have diverged")
    mu, sigma = s.mean(), s.std()
    slack = 1e-12 * max(1.0, float(np.abs(s).max()))
    keep = s >= mu - k * sigma - slack
    if tails == "both":
        keep &= s <= mu + k * sigma + slack
    if not keep.any():
        keep[np.argmin(np.abs(s - mu))] = True
    return keep


@dataclasses.dataclass(frozen=True)
class Criterion:
    """A rule that picks channels to remove from one group's importances.

    Attributes:
      name: 'band', 'band_low' or 'ratio'; value: ``k`` or ``r``.
    """

    name: str
    value: float

    def keep_mask(self, importance: np.ndarray) -> np.ndarray:
        """Bool keep-mask ``(channels,)`` for float importances ``(channels,)``."""
        s = np.asarray(importance, dtype=np.float64)
        if self.name in ("band", "band_low"):
            return band_keep_mask(s, self.value, "both" if self.name == "band" else "low")
        keep = np.ones(s.shape, dtype=bool)
        n = int(np.floor(self.value * s.size + 1e-9))
        keep[np.argsort(s, kind="stable")[:n]] = False
        return keep

    def __str__(self) -> str:
        return f"{self.name}({self.value:g})"


def band(k: float) -> Criterion:
    """The paper's band criterion: keep channels with importance in ``[mu - k*sigma, mu + k*sigma]``.

    Raises:
      ValueError: ``k <= 0`` or not finite.
    """
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"band(k) needs a finite k > 0 (paper: 2.0-2.5), got {k!r}")
    return Criterion("band", float(k))


def band_low(k: float) -> Criterion:
    """The band's lower bound only: keep channels with importance ``>= mu - k*sigma`` (not the paper's).

    Removes only unusually weak channels; the paper's :func:`band` also removes unusually strong
    ones, which on inherited weights are the filters the model relies on most.

    Raises:
      ValueError: ``k <= 0`` or not finite.
    """
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"band_low(k) needs a finite k > 0, got {k!r}")
    return Criterion("band_low", float(k))


def ratio(r: float) -> Criterion:
    """Remove the fraction ``r`` of each group's channels with the lowest importance.

    Raises:
      ValueError: ``r`` outside ``[0, 1)``.
    """
    if not (0 <= r < 1):
        raise ValueError(f"ratio(r) needs 0 <= r < 1 (the fraction of channels removed per group), got {r!r}")
    return Criterion("ratio", float(r))


CRITERION_NAMES = ("band", "band_low", "ratio")  # = config.CRITERIA (tested; config stays TF-free)


def criterion_from_name(name: str, *, k: float = 2.2, prune_ratio: float = 0.2) -> Criterion:
    """The criterion a name stands for (``--criterion``): ``band(k)``, ``band_low(k)`` or ``ratio(prune_ratio)``.

    Raises:
      ValueError: an unknown name (the message lists :data:`CRITERION_NAMES`), or ``k`` / ``prune_ratio`` out of
        range (as :func:`band` / :func:`ratio` raise).
    """
    if name == "ratio":
        return ratio(prune_ratio)
    if name in ("band", "band_low"):
        return band(k) if name == "band" else band_low(k)
    raise ValueError(f"unknown criterion {name!r}; choose one of {', '.join(CRITERION_NAMES)}")
