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
      counters: cumulative counters (``bytes_down``, ``bytes_up``, ...), ints.
      steps: server step name -> its JSON state (``ServerStep.state_dict``).
      step_arrays: server step name -> its arrays.
      server_optimizer: the server optimizer's state (``process.server_optimizer_state``): the learning rate
        for SGD, plus step and moments for FedAdam / FedYogi.
      client_optimizer: the clients' shared optimizer state (``shared_adam.client_optimizer_state``; empty
        unless ``--client-optimizer shared_adam``).
      float_model_json: the float architecture when the global model is under tfmot wrappers (QAT,
        ``--method magnitude``), else None. Rebuilding the wrapped model is the steps' business
        (``ServerStep.restore_model``, ``loop.restore_state``).
    """

    round: int
    config: dict[str, Any]
    model_json: str
    weights: list[np.ndarray]
    counters: dict[str, int]
    steps: dict[str, dict] = dataclasses.field(default_factory=dict)
    step_arrays: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    float_model_json: Optional[str] = None
    server_optimizer: list[np.ndarray] = dataclasses.field(default_factory=list)
    client_optimizer: list[np.ndarray] = dataclasses.field(default_factory=list)


def checkpoint_path(output_dir: str) -> str:
    """Path of the checkpoint file in ``output_dir``."""
    return os.path.join(output_dir, CHECKPOINT_FILE)


def save(output_dir: str, ckpt: Checkpoint) -> str:
    """Writes ``ckpt`` atomically to ``<output_dir>/checkpoint.npz``; returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    names = sorted(ckpt.steps)
    meta = {"round": ckpt.round, "config": ckpt.config, "model_json": ckpt.model_json,
            "steps": ckpt.steps, "counters": ckpt.counters, "num_weights": len(ckpt.weights),
            "step_arrays": {n: len(ckpt.step_arrays.get(n, [])) for n in names},
            "float_model_json": ckpt.float_model_json, "num_server_optimizer": len(ckpt.server_optimizer),
            "num_client_optimizer": len(ckpt.client_optimizer)}
    arrays = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(ckpt.weights)}
    arrays.update({f"o{i:04d}": np.asarray(a) for i, a in enumerate(ckpt.server_optimizer)})
    arrays.update({f"c{i:04d}": np.asarray(a) for i, a in enumerate(ckpt.client_optimizer)})
    for j, n in enumerate(names):
        arrays.update({f"s{j:02d}_{i:04d}": np.asarray(a) for i, a in enumerate(ckpt.step_arrays.get(n, []))})
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
            counts = meta.get("step_arrays", {})
            server_optimizer = [z[f"o{i:04d}"] for i in range(meta.get("num_server_optimizer", 0))]
            client_optimizer = [z[f"c{i:04d}"] for i in range(meta.get("num_client_optimizer", 0))]
            step_arrays = {n: [z[f"s{j:02d}_{i:04d}"] for i in range(counts[n])] for j, n in enumerate(sorted(counts))}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"--resume: checkpoint {path} is corrupt ({type(e).__name__}: {e}); "
                              f"start the run again with --overwrite (its finished rounds are discarded)") from e
    if "steps" not in meta:  # written before --schedule existed: the paper's method was the only one
        meta["config"].setdefault("schedule", "paper")
    return Checkpoint(round=int(meta["round"]), config=meta["config"], model_json=meta["model_json"],
                      weights=weights, counters=meta["counters"], steps=meta.get("steps") or _legacy_steps(meta),
                      step_arrays=step_arrays, float_model_json=meta.get("float_model_json"),
                      server_optimizer=server_optimizer, client_optimizer=client_optimizer)


def _legacy_steps(meta: dict) -> dict[str, dict]:
    """Step states of a checkpoint written before server steps (a ``controller`` entry; QAT if wrapped)."""
    steps = {"structured": meta["controller"]} if "controller" in meta else {}
    if meta.get("float_model_json") and meta["config"].get("method") != "magnitude":
        steps["qat"] = {"active": True}
    return steps
