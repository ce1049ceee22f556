"""The pruning engine: plain Keras + NumPy, usable without TFF.

- :func:`l1_filter_norms`, :func:`band_keep_mask`, :func:`band_selection`: the paper's criterion.
- :func:`prune_model` / :func:`mask_model`: structured surgery (inherit or re-init weights).
- :class:`PruningController`: accept-on-parameter-drop with patience and a last prune round.
"""

from tff_prune.pruning.controller import ControllerState, Decision, PruningController
from tff_prune.pruning.criteria import band_keep_mask, band_selection, l1_filter_norms, widths_after
from tff_prune.pruning.graph import ChannelPath, UnsupportedLayerError, barriers, channel_paths
from tff_prune.pruning.surgery import mask_model, prune_model

__all__ = [
    "ChannelPath", "ControllerState", "Decision", "PruningController", "UnsupportedLayerError",
    "band_keep_mask", "band_selection", "barriers", "channel_paths", "l1_filter_norms", "mask_model",
    "prune_model", "widths_after",
]
