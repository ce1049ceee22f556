"""Benchmark TFLite models on this host with tflite_runtime's interpreter (same schema as Android).

Example:
  tff-prune-benchmark-host --num-threads 1 --num-runs 500 runs/demo/fedavg/model.tflite \
      runs/demo/pruned/model.tflite

Inputs are real test images of the data set each model takes (28x28x1: FEMNIST, 84x84x3: CelebA;
--data-dir, else zeros with --no-data). Each file is checked against TFLite's schema first (a
truncated file is an error, not a crash). Rows are keyed by run: two files both named model.tflite
are shown as fedavg/model.tflite and pruned/model.tflite. Prints a table with speed-ups against the
first model and writes host_benchmark.{json,md,png}. Models are timed one after the other; for a
ratio between two models use tff-prune-compare, which times them interleaved.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Optional, Sequence

from tff_prune.tf_logging import import_tensorflow

import_tensorflow()  # first, so TF 2.14's CUDA-registration noise never prints

from mobile import host_benchmark, report
from tff_prune.data.catalog import resolve_data_dir
from tff_prune.data import DataError


def input_shape(path: str) -> tuple[int, ...]:
    """The model's input shape ``(H, W, C)`` after :func:`mobile.host_benchmark.check_tflite` and the
    static-shape check; raises BenchmarkError."""
    from tflite_runtime.interpreter import Interpreter

    data = host_benchmark.check_tflite(path)
    inp = host_benchmark.check_static_input(Interpreter(model_content=data), path)
    return tuple(int(d) for d in inp["shape"][1:])


def real_inputs(shape, data_dir: str, n: int = 256):
    """Real test images float32 ``(n, H, W, C)`` for a model taking ``shape``: FEMNIST for (28, 28, 1),
    CelebA for (84, 84, 3).

    Raises:
      ValueError: another shape (pass --no-data). DataError: the data file is missing.
    """
    from tff_prune.data import sample_images

    shape = tuple(shape)
    dataset = {(28, 28, 1): "femnist", (84, 84, 3): "celeba"}.get(shape)
    if dataset is None:
        raise ValueError(f"no real data set has inputs {shape} (FEMNIST: (28, 28, 1), CelebA: (84, 84, 3)); "
                         f"pass --no-data to time it on zeros")
    return sample_images(dataset, data_dir, "test", n, seed=0)[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the exit code (2: bad flags, unreadable model or data)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".tflite files; the first is the reference for speed-ups")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--num-runs", type=int, default=200)
    p.add_argument("--warmup-runs", type=int, default=20)
    p.add_argument("--no-xnnpack", action="store_true", help="builtin kernels without the XNNPACK delegate")
    p.add_argument("--data-dir", default=None, help="folder with femnist_leaf_300w.npz for real inputs")
    p.add_argument("--no-data", action="store_true", help="feed zeros instead of real images")
    p.add_argument("--output-dir", default="runs/host", help="where JSON, table and chart go")
    args = p.parse_args(argv)
    if args.num_threads < 1 or args.num_runs < 1 or args.warmup_runs < 0:
        p.error("--num-threads and --num-runs must be >= 1, --warmup-runs >= 0")
    for path in args.models:
        if not os.path.isfile(path):
            p.error(f"file not found: {path}")
    labels = host_benchmark.unique_labels(args.models)
    results = []
    try:
        shapes = [input_shape(path) for path in args.models]  # every file validated before any timing
        data_dir = None if args.no_data else resolve_data_dir(args.data_dir)
        for path, label, shape in zip(args.models, labels, shapes):
            inputs = None if data_dir is None else real_inputs(shape, data_dir)
            r = host_benchmark.benchmark(path, num_threads=args.num_threads, num_runs=args.num_runs,
                                         warmup_runs=args.warmup_runs, inputs=inputs,
                                         use_xnnpack=not args.no_xnnpack)
            results.append({"model": path, "label": label, "model_bytes": os.path.getsize(path), **r})
    except (host_benchmark.BenchmarkError, ValueError, DataError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    title = (f"tflite_runtime on {platform.machine()} ({platform.processor() or 'cpu'}), "
             f"{args.num_threads} thread(s), XNNPACK {'off' if args.no_xnnpack else 'on'}")
    report.publish(results, args.output_dir, "host_benchmark", title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
