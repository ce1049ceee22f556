"""Atomic per-round checkpoint: everything ``--resume`` needs, in one file.

``<output_dir>/checkpoint.npz`` holds the global Keras weights (``get_weights()``
order, keys ``w0000``...) and a JSON ``meta`` string: the finished round, the
experiment config, the architecture (``model.to_json()``), the controller state and
the cumulative byte counters. Client sampling and shuffling are pure functions of
``(seed, round)``, so no RNG state needs saving. The file is written to a temporary
name in the same folder and renamed over the old one (``os.replace``), so a crash
leaves either the previous or the new checkpoint, never a partial one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tff_prune.federated.qat import quantize
from tff_prune.report import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.npz"


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names the file and the fix."""


@dataclasses.dataclass
class Checkpoint:
    """State after a finished round.

    Attributes:
      round: last finished round (1-based).
      config: ``ExperimentConfig.to_dict()`` of the run.
      model_json: Keras architecture of the global model after round ``round``'s aggregation
        (a prune of it is decided at the start of the next round).
      weights: its weights, ``model.get_weights()`` order, float32 numpy arrays.
      controller: ``ControllerState.to_dict()``.
      counters: cumulative counters (``bytes_down``, ``bytes_up``, ...), ints.
      float_model_json: during QAT, the float architecture under the QAT wrappers; with
        ``--method magnitude``, the architecture under the tfmot pruning wrappers (else None).
    """

    round: int
    config: dict[str, Any]
    model_json: str
    weights: list[np.ndarray]
    controller: dict[str, Any]
    counters: dict[str, int]
    float_model_json: Optional[str] = None

    def build_model(self) -> tf.keras.Model:
        """Rebuilds the Keras model (a QAT or magnitude-pruning model too) with the checkpointed weights.

        A QAT model is rebuilt as ``quantize(float architecture)``: deserializing tfmot's own
        JSON gives a model with a different variable list (measured: 29 variables instead of 27).
        A magnitude-pruning model is rebuilt the same way, as ``magnitude.wrap(architecture)``;
        its masks and step counter are among the weights.
        """
        if self.float_model_json and self.config.get("method") == "magnitude":
            from tff_prune.federated import magnitude

            model = magnitude.wrap(tf.keras.models.model_from_json(self.float_model_json),
                                   self.config["target_sparsity"], self.config["max_prune_round"])
        elif self.float_model_json:
            model = quantize(tf.keras.models.model_from_json(self.float_model_json))
        else:
            model = tf.keras.models.model_from_json(self.model_json)
        model.set_weights(self.weights)
        return model

    def build_float_architecture(self) -> Optional[tf.keras.Model]:
        """During QAT or magnitude pruning, a fresh float model of the architecture under the wrappers; else None."""
        return tf.keras.models.model_from_json(self.float_model_json) if self.float_model_json else None


def checkpoint_path(output_dir: str) -> str:
    """Path of the checkpoint file in ``output_dir``."""
    return os.path.join(output_dir, CHECKPOINT_FILE)


def save(output_dir: str, ckpt: Checkpoint) -> str:
    """Writes ``ckpt`` atomically to ``<output_dir>/checkpoint.npz``; returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    meta = {"round": ckpt.round, "config": ckpt.config, "model_json": ckpt.model_json,
            "controller": ckpt.controller, "counters": ckpt.counters, "num_weights": len(ckpt.weights),
            "float_model_json": ckpt.float_model_json}
    arrays = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(ckpt.weights)}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(checkpoint_path(output_dir), buf.getvalue())


def exists(output_dir: str) -> bool:
    """True if ``output_dir`` holds a checkpoint."""
    return os.path.isfile(checkpoint_path(output_dir))


def load(output_dir: str) -> Checkpoint:
    """Reads the checkpoint of ``output_dir``.

    Raises:
      CheckpointError: no checkpoint there, or the file is corrupt.
    """
    path = checkpoint_path(output_dir)
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume: no checkpoint at {path}; run without --resume to start a new run, "
                              f"or point --output-dir at the folder of the interrupted run")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = [z[f"w{i:04d}"] for i in range(meta["num_weights"])]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"--resume: checkpoint {path} is corrupt ({type(e).__name__}: {e}); "
                              f"delete it and start the run again without --resume") from e
    return Checkpoint(round=int(meta["round"]), config=meta["config"], model_json=meta["model_json"],
                      weights=weights, controller=meta["controller"], counters=meta["counters"],
                      float_model_json=meta.get("float_model_json"))
