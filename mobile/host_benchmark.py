"""Host-side TFLite latency with ``tflite_runtime``'s interpreter.

Measures, like TFLite's ``benchmark_model``: interpreter creation + tensor
allocation (``init_us``), the first ``invoke`` (``first_inference_us``), ``warmup_runs``
further invokes (``warmup_avg_us``), then ``num_runs`` timed invokes on real inputs
(mean, std, min, max, median, p5, p95 in microseconds). Only ``invoke`` is timed;
input copies happen before the clock starts.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from mobile.convert import quantize_input


class BenchmarkError(RuntimeError):
    """The model cannot be loaded or run; the message names the file and the cause."""


def _interpreter(model, num_threads: int, use_xnnpack: bool):
    from tflite_runtime.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    kwargs = {"num_threads": num_threads, "experimental_op_resolver_type": resolver}
    try:
        if isinstance(model, (bytes, bytearray)):
            return Interpreter(model_content=bytes(model), **kwargs)
        return Interpreter(model_path=str(model), **kwargs)
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
      BenchmarkError: the model cannot be loaded. ValueError: ``num_runs < 1``.
    """
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    t0 = time.perf_counter_ns()
    interp = _interpreter(model, num_threads, use_xnnpack)
    interp.allocate_tensors()
    init_us = (time.perf_counter_ns() - t0) / 1e3
    inp = interp.get_input_details()[0]
    shape = tuple(inp["shape"])
    if inputs is None:
        batch = [np.zeros(shape, inp["dtype"])]
    else:
        batch = [quantize_input(x, inp).reshape(shape) for x in inputs[: max(1, min(len(inputs), 256))]]

    def invoke(i):
        interp.set_tensor(inp["index"], batch[i % len(batch)])
        t = time.perf_counter_ns()
        interp.invoke()
        return (time.perf_counter_ns() - t) / 1e3

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
