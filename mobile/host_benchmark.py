"""Host-side TFLite latency with ``tflite_runtime``'s interpreter.

Measures, like TFLite's ``benchmark_model``: interpreter creation + tensor
allocation (``init_us``), the first ``invoke`` (``first_inference_us``), ``warmup_runs``
further invokes (``warmup_avg_us``), then ``num_runs`` timed invokes on real inputs
(mean, std, min, max, median, p5, p95 in microseconds). Only ``invoke`` is timed;
input copies happen before the clock starts.

Two models are compared by :func:`compare_interleaved`: both loaded in one process and timed in
alternating blocks (A B, B A, A B, ...), so both see the same machine load; the ratio of their
medians is reported per block pair with its spread. Latencies measured at different times (each
run's own end) are never divided by each other.

Every model file is first checked against TFLite's flatbuffer schema (:func:`check_tflite`): a
truncated or corrupt file would crash the interpreter (segfault) instead of raising.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Mapping, Optional, Sequence

import numpy as np

from mobile.convert import quantize_input


class BenchmarkError(RuntimeError):
    """The model cannot be loaded or run; the message names the file and the cause."""


def check_tflite(model, where: Optional[str] = None) -> bytes:
    """Reads and validates a ``.tflite`` before any interpreter touches it.

    Checks the ``TFL3`` file identifier, unpacks the whole flatbuffer with TFLite's own schema
    (``tensorflow.lite.python.schema_py_generated``: every table, vector and buffer must lie inside
    the file), and that every tensor, buffer and operator index points at something that exists.

    Args:
      model: path or bytes. where: the name used in messages (default: the path).

    Returns:
      the file's bytes.

    Raises:
      BenchmarkError: unreadable, truncated or corrupt file (names the file, its size and the fix).
    """
    where = where or (str(model) if not isinstance(model, (bytes, bytearray)) else "model bytes")
    if isinstance(model, (bytes, bytearray)):
        data = bytes(model)
    else:
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BenchmarkError(f"cannot read TFLite model {where}: {e}") from e
    fix = "re-export it (tff-prune-convert) or copy the whole file again"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BenchmarkError(f"{where} ({len(data):,} bytes) is not a TFLite flatbuffer (no 'TFL3' identifier "
                             f"at bytes 4-8); {fix}")
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        m = schema.ModelT.InitFromPackedBuf(data, 0)
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError, OverflowError) as e:
        raise BenchmarkError(f"{where} ({len(data):,} bytes) is truncated or corrupt: reading it with TFLite's "
                             f"schema ran past its end or into garbage ({type(e).__name__}: {e}); {fix}") from e
    problems = []
    buffers, codes = m.buffers or [], m.operatorCodes or []
    for i, b in enumerate(buffers):
        if b.offset and b.offset > 1 and b.offset + b.size > len(data):
            problems.append(f"buffer {i} lies at bytes {b.offset}..{b.offset + b.size}, past the end")
    if not m.subgraphs:
        problems.append("no subgraph")

    def ids(v):
        return [] if v is None else [int(i) for i in v]

    for g in m.subgraphs or []:
        tensors = g.tensors or []
        for t in tensors:
            if t.buffer >= len(buffers):
                problems.append(f"tensor {t.name!r} names buffer {t.buffer} of {len(buffers)}")
        for idx in ids(g.inputs) + ids(g.outputs):
            if not 0 <= idx < len(tensors):
                problems.append(f"subgraph input/output tensor {idx} of {len(tensors)}")
        for op in g.operators or []:
            if op.opcodeIndex >= len(codes):
                problems.append(f"operator opcode {op.opcodeIndex} of {len(codes)}")
            for idx in ids(op.inputs) + ids(op.outputs):
                if not -1 <= idx < len(tensors):
                    problems.append(f"operator tensor {idx} of {len(tensors)}")
    if problems:
        raise BenchmarkError(f"{where} ({len(data):,} bytes) is corrupt: {'; '.join(problems[:3])}; {fix}")
    return data


def check_static_input(interp, where: str) -> dict:
    """The interpreter's one input detail; raises BenchmarkError for a dynamic (-1) non-batch axis."""
    inp = interp.get_input_details()[0]
    sig = [int(d) for d in inp.get("shape_signature", inp["shape"])]
    if any(d < 0 for d in sig[1:]):
        raise BenchmarkError(f"{where} has a dynamic input shape {sig} (-1 = any size); a latency needs one "
                             f"fixed input size: re-export from a model built on tf.keras.Input(shape=(H, W, C))")
    return inp


def _interpreter(model, num_threads: int, use_xnnpack: bool):
    from tflite_runtime.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    kwargs = {"num_threads": num_threads, "experimental_op_resolver_type": resolver}
    try:
        return Interpreter(model_content=bytes(model), **kwargs)  # bytes already passed check_tflite
    except ValueError as e:
        where = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
        raise BenchmarkError(f"cannot load TFLite model {where}: {e}. Is it a valid .tflite flatbuffer?") from e


def benchmark(model, num_threads: int = 1, num_runs: int = 200, warmup_runs: int = 10,
              inputs: Optional[np.ndarray] = None, use_xnnpack: bool = True) -> dict:
    """Measures TFLite inference latency on this host.

    Args:
      model: path to a ``.tflite`` file, or its bytes.
      num_threads: interpreter threads.
      num_runs: timed invokes (>= 1).
      warmup_runs: untimed invokes after the first one.
      inputs: real examples, float32 ``(N, *input_shape)``; cycled one per invoke
        (quantized for int8 inputs). None: zeros.
      use_xnnpack: apply the default XNNPACK delegate (tflite-runtime's default).

    Returns:
      dict with ``init_us``, ``first_inference_us``, ``warmup_avg_us``, ``inference_avg_us``,
      ``inference_std_us``, ``inference_min_us``, ``inference_max_us``,
      ``inference_median_us``, ``inference_p5_us``, ``inference_p95_us`` (float, µs),
      ``num_runs``, ``num_threads``, ``use_xnnpack``.

    Raises:
      BenchmarkError: the model cannot be loaded (truncated or corrupt file, dynamic input shape,
        inputs of another shape). ValueError: ``num_runs < 1``.
    """
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    data = check_tflite(model)
    t0 = time.perf_counter_ns()
    invoke = _Runner(data, num_threads, use_xnnpack, inputs, str(model) if isinstance(model, str) else "model")
    init_us = (time.perf_counter_ns() - t0) / 1e3
    first = invoke(0)
    warm = [invoke(i + 1) for i in range(warmup_runs)]
    times = np.array([invoke(i) for i in range(num_runs)])
    return {
        "init_us": init_us, "first_inference_us": first,
        "warmup_avg_us": float(np.mean(warm)) if warm else None,
        "inference_avg_us": float(times.mean()), "inference_std_us": float(times.std()),
        "inference_min_us": float(times.min()), "inference_max_us": float(times.max()),
        "inference_median_us": float(np.median(times)),
        "inference_p5_us": float(np.percentile(times, 5)), "inference_p95_us": float(np.percentile(times, 95)),
        "num_runs": int(num_runs), "num_threads": int(num_threads), "use_xnnpack": bool(use_xnnpack),
    }


class _Runner:
    """One interpreter with its inputs; calling it with ``i`` feeds input ``i`` and times one invoke (µs)."""

    def __init__(self, data: bytes, num_threads: int, use_xnnpack: bool, inputs: Optional[np.ndarray], where: str):
        self.interp = _interpreter(data, num_threads, use_xnnpack)
        self.interp.allocate_tensors()
        self.inp = check_static_input(self.interp, where)
        shape = tuple(self.inp["shape"])
        if inputs is None:
            self.batch = [np.zeros(shape, self.inp["dtype"])]
        else:
            if tuple(inputs.shape[1:]) != shape[1:]:
                raise BenchmarkError(f"{where} takes input {shape[1:]}, but the images are {tuple(inputs.shape[1:])}")
            self.batch = [quantize_input(x, self.inp).reshape(shape) for x in inputs[: max(1, min(len(inputs), 256))]]

    def __call__(self, i: int) -> float:
        self.interp.set_tensor(self.inp["index"], self.batch[i % len(self.batch)])
        t = time.perf_counter_ns()
        self.interp.invoke()
        return (time.perf_counter_ns() - t) / 1e3


def _spread(values) -> dict:
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "p25": float(np.percentile(v, 25)), "p75": float(np.percentile(v, 75)),
            "min": float(v.min()), "max": float(v.max())}


def compare_interleaved(models: Mapping[str, object], inputs: Optional[np.ndarray] = None, repetitions: int = 10,
                        runs_per_repetition: int = 50, warmup_runs: int = 20, num_threads: int = 1,
                        use_xnnpack: bool = True) -> dict:
    """Times several models side by side in this process, interleaved, and their latency ratios.

    All models are loaded and warmed up first. Then ``repetitions`` rounds each time every model for
    one block of ``runs_per_repetition`` invokes, in alternating order (A B, then B A, ...: neither
    model always runs first), so all see the same machine load. A block's latency is the median of its
    invokes; a round's ratio is ``block median of model / block median of the first model``.

    Args:
      models: label -> path or bytes, the first is the reference (e.g. ``{"fedavg": ..., "pruned": ...}``).
      inputs: real examples, float32 ``(N, *input_shape)`` (the same for every model); None: zeros.
      repetitions: rounds (>= 2). runs_per_repetition: invokes per block (>= 1). warmup_runs: untimed
        invokes per model before the first round.

    Returns:
      dict: ``reference`` (label), ``repetitions``, ``runs_per_repetition``, ``num_threads``,
      ``use_xnnpack``, ``order`` ("alternating"), ``models`` {label: ``median_us``, ``p5_us``,
      ``p95_us`` over all timed invokes, ``block_medians_us``}, ``ratios`` {label (not the
      reference): ``per_repetition`` (list), ``median``, ``p25``, ``p75``, ``min``, ``max`` of
      latency / reference latency (< 1: faster than the reference)}.

    Raises:
      BenchmarkError: a model cannot be loaded or takes other inputs. ValueError: fewer than two
        models, ``repetitions < 2`` or ``runs_per_repetition < 1``.
    """
    labels = list(models)
    if len(labels) < 2:
        raise ValueError(f"compare_interleaved needs >= 2 models, got {len(labels)}")
    if repetitions < 2 or runs_per_repetition < 1 or warmup_runs < 0:
        raise ValueError(f"repetitions must be >= 2 and runs_per_repetition >= 1, warmup_runs >= 0; got "
                         f"{repetitions}, {runs_per_repetition}, {warmup_runs}")
    runners = {}
    for label in labels:
        m = models[label]
        runners[label] = _Runner(check_tflite(m, f"{label} ({m})" if isinstance(m, str) else label), num_threads,
                                 use_xnnpack, inputs, label)
    for label in labels:
        for i in range(warmup_runs + 1):
            runners[label](i)
    times = {label: [] for label in labels}
    blocks = {label: [] for label in labels}
    for r in range(repetitions):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            t = [runners[label](r * runs_per_repetition + i) for i in range(runs_per_repetition)]
            times[label] += t
            blocks[label].append(float(np.median(t)))
    ref = labels[0]
    out = {"reference": ref, "repetitions": int(repetitions), "runs_per_repetition": int(runs_per_repetition),
           "num_threads": int(num_threads), "use_xnnpack": bool(use_xnnpack), "order": "alternating",
           "models": {}, "ratios": {}}
    for label in labels:
        t = np.asarray(times[label])
        out["models"][label] = {"median_us": float(np.median(t)), "p5_us": float(np.percentile(t, 5)),
                                "p95_us": float(np.percentile(t, 95)), "block_medians_us": blocks[label]}
        if label != ref:
            per = [b / a for a, b in zip(blocks[ref], blocks[label])]
            out["ratios"][label] = {"per_repetition": per, **_spread(per)}
    return out


def unique_labels(paths: Sequence[str]) -> list[str]:
    """Short distinct names for model files: the file name, or as many parent folders as make them differ.

    ``["runs/demo/fedavg/model.tflite", "runs/demo/pruned/model.tflite"]`` -> ``["fedavg/model.tflite",
    "pruned/model.tflite"]``. The same file given twice gets ``#2`` on its second name.
    """
    full = [os.path.normpath(os.path.abspath(p)) for p in paths]
    distinct = list(dict.fromkeys(full))
    parts = {p: p.split(os.sep) for p in distinct}
    depth = 1
    while depth < max(len(v) for v in parts.values()):
        if len({"/".join(v[-depth:]) for v in parts.values()}) == len(distinct):
            break
        depth += 1
    short = {p: "/".join(v[-depth:]).lstrip("/") for p, v in parts.items()}
    seen: dict[str, int] = {}
    out = []
    for p in full:
        seen[p] = seen.get(p, 0) + 1
        out.append(short[p] if seen[p] == 1 else f"{short[p]}#{seen[p]}")
    return out
