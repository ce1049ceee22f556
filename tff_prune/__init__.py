"""tff_prune: federated learning with automatic server-side structured (filter) pruning.

Subpackages: ``data`` (client datasets), ``models`` (Keras architectures),
``pruning`` (the Keras-only pruning engine: criterion, surgery, controller),
``federated`` (TFF LearningProcess and the round loop), plus ``accounting``
(parameters, FLOPs, bytes) and ``report`` (metrics files, plots, comparison).
"""

__version__ = "0.1.0"
