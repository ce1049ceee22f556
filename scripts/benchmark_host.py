#!/usr/bin/env python3
"""Benchmark TFLite models on this host with tflite_runtime's interpreter (same schema as Android).

Example:
  python scripts/benchmark_host.py --num-threads 1 --num-runs 500 runs/demo/fedavg/model.tflite \
      runs/demo/pruned/model.tflite

Inputs are real FEMNIST test images (--data-dir, else zeros with --no-data). Prints a table with
speed-ups against the first model and writes host_benchmark.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mobile import host_benchmark, report  # noqa: E402
from tff_prune.config import resolve_data_dir  # noqa: E402


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
    inputs = None
    if not args.no_data:
        from tff_prune.data import femnist

        try:
            arrays = femnist.load_packed(resolve_data_dir(args.data_dir))
        except femnist.DataError as e:
            p.error(f"{e} (or pass --no-data)")
        inputs = arrays["test_pixels_u8"][:256, :, :, None].astype("float32") / 255.0
    results = []
    try:
        for path in args.models:
            r = host_benchmark.benchmark(path, num_threads=args.num_threads, num_runs=args.num_runs,
                                         warmup_runs=args.warmup_runs, inputs=inputs,
                                         use_xnnpack=not args.no_xnnpack)
            results.append({"model": path, "model_bytes": os.path.getsize(path), **r})
    except host_benchmark.BenchmarkError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    title = (f"tflite_runtime on {platform.machine()} ({platform.processor() or 'cpu'}), "
             f"{args.num_threads} thread(s), XNNPACK {'off' if args.no_xnnpack else 'on'}")
    report.publish(results, args.output_dir, "host_benchmark", title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
