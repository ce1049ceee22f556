"""Centralized training on the pooled client data: the reference a federated result is read against.

Federated-learning papers compare FedAvg with the same model trained on all clients' examples in one
place (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017, Sec. 3). The gap between the two is what the non-IID split costs; it tells whether a
FedAvg run that stays low is short of rounds or short of data. Same model, optimizer (Adam 1e-3) and
batch (32) as the clients use; Keras ``fit``, one call per epoch, test accuracy after every epoch.
"""

from __future__ import annotations

import dataclasses
import time
import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class CentralizedResult:
    """Per-epoch curve of one centralized training run.

    Attributes:
      curve: one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_accuracy`` (mean over the epoch's
        batches, training mode), ``test_loss``, ``test_accuracy`` (after the epoch, inference mode; fractions in
        [0, 1]), ``seconds`` (wall time of the epoch's fit, float).
      num_train_examples, num_test_examples: pooled example counts.
      test_majority: share of the most frequent test label (the accuracy of predicting one class for all).
    """

    curve: list[dict]
    num_train_examples: int
    num_test_examples: int
    test_majority: float

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.curve[-1]["test_accuracy"]

    @property
    def best(self) -> dict:
        """The epoch with the highest test accuracy (chosen on the test set: an optimistic number)."""
        return max(self.curve, key=lambda e: e["test_accuracy"])

    def to_json(self) -> dict:
        """JSON-ready dict: the fields plus ``final_accuracy``, ``best_accuracy`` and ``best_epoch``."""
        return {**dataclasses.asdict(self), "final_accuracy": self.final_accuracy,
                "best_accuracy": self.best["test_accuracy"], "best_epoch": self.best["epoch"]}


def train_centralized(model: tf.keras.Model, train: tuple[np.ndarray, np.ndarray],
                      test: tuple[np.ndarray, np.ndarray], epochs: int, batch_size: int = 32,
                      learning_rate: float = 1e-3, seed: int = 0, progress: bool = True) -> CentralizedResult:
    """Trains ``model`` (uncompiled; compiled here) on the pooled training examples, evaluating after each epoch.

    Args:
      model: Keras classifier with a softmax output; its weights are trained in place.
      train, test: ``(x float32 (N, H, W, C), y int32 (N,))`` (e.g. ``FederatedData.train_arrays()`` /
        ``test_arrays()``).
      epochs: passes over the pooled training set (>= 1).
      batch_size, learning_rate: Keras batch and Adam learning rate (paper's clients: 32, 1e-3).
      seed: seeds Keras/TF/NumPy (``tf.keras.utils.set_random_seed``): the shuffling order.
      progress: tqdm bar over epochs.

    Returns:
      CentralizedResult with one ``curve`` entry per epoch.

    Raises:
      ValueError: ``epochs`` < 1, ``batch_size`` < 1, empty or mismatched arrays.
    """
    (x, y), (tx, ty) = train, test
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    if len(x) == 0 or len(x) != len(y) or len(tx) == 0 or len(tx) != len(ty):
        raise ValueError(f"need non-empty, matching arrays: train x {len(x)} / y {len(y)}, "
                         f"test x {len(tx)} / y {len(ty)}")
    from tqdm import tqdm

    tf.keras.utils.set_random_seed(seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    curve = []
    bar = tqdm(range(1, epochs + 1), desc="centralized", unit="epoch", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        hist = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0).history
        seconds = time.perf_counter() - t0
        test_loss, test_acc = model.evaluate(tx, ty, batch_size=256, verbose=0)
        curve.append(dict(epoch=epoch, train_loss=float(hist["loss"][0]), train_accuracy=float(hist["accuracy"][0]),
                          test_loss=float(test_loss), test_accuracy=float(test_acc), seconds=seconds))
        bar.set_postfix(test_acc=f"{test_acc:.4f}")
    majority = float(np.bincount(np.asarray(ty, dtype=np.int64)).max() / len(ty))
    return CentralizedResult(curve, int(len(x)), int(len(tx)), majority)

