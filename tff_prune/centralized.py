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
from typing import Optional

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



def plot_curve(result: CentralizedResult, path: str, title: str) -> str:
    """Train / test accuracy (%) against epoch, with the test majority-class share; PNG written to ``path``.

    Returns:
      ``path``.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tff_prune.report import save_figure

    ep = [e["epoch"] for e in result.curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [100 * e["train_accuracy"] for e in result.curve], marker="o", label="train (pooled)")
    ax.plot(ep, [100 * e["test_accuracy"] for e in result.curve], marker="o", label="test clients")
    ax.axhline(100 * result.test_majority, color="grey", ls="--", label="test majority class")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=title)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def run_centralized(dataset: str, model: str, output_dir: str, *, data_dir: Optional[str] = None,
                    epochs: int = 10, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                    femnist_crop: bool = False, celeba_attribute: str = "male",
                    max_clients: Optional[int] = None, progress: bool = True) -> tuple[dict, CentralizedResult]:
    """Loads the pooled training clients, trains ``model`` on them, writes summary.json and curves.png.

    Args:
      dataset, model: ``config.DATASETS`` / ``config.MODELS`` names. output_dir: created if missing.
      data_dir: the packed data (``data.catalog.resolve_data_dir``: default $TFF_PRUNE_DATA_DIR, else ../shared/data).
      epochs, batch_size, lr, seed: as :func:`train_centralized`. femnist_crop, celeba_attribute,
        max_clients: as ``data.load``.

    Returns:
      (the summary.json dict, the :class:`CentralizedResult`).

    Raises:
      DataError: the data folder is missing or incomplete. ValueError: an unknown CelebA attribute.
    """
    import os

    from tff_prune import data as data_lib
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.models import get_model
    from tff_prune.report import write_json

    data = data_lib.load(dataset, resolve_data_dir(data_dir), max_clients=max_clients,
                         femnist_crop=femnist_crop, celeba_attribute=celeba_attribute)
    train, test = data.train_arrays(), data.test_arrays()
    result = train_centralized(get_model(model, dataset, seed=seed), train, test, epochs, batch_size, lr, seed,
                               progress=progress)
    out = os.path.abspath(output_dir)
    summary = {"dataset": dataset, "model": model, "epochs": epochs, "batch_size": batch_size,
               "lr": lr, "seed": seed, "femnist_crop": femnist_crop,
               "celeba_attribute": celeba_attribute if dataset == "celeba" else None,
               "num_train_clients": len(data.client_ids), **result.to_json()}
    write_json(os.path.join(out, "summary.json"), summary)
    plot_curve(result, os.path.join(out, "curves.png"),
               f"{dataset} {model}: centralized, {len(data.client_ids)} clients pooled")
    return summary, result
