#!/usr/bin/env python3
"""Benchmark TFLite models on an Android device with TFLite's benchmark_model, over adb.

Example:
  python scripts/benchmark_android.py --benchmark-binary android_aarch64_benchmark_model \
      --num-threads 4 --num-runs 100 --output-dir runs/android fedavg.tflite pruned.tflite pruned_int8.tflite

Get the binary from TFLite's prebuilt tools (see README: "Android benchmark"). Needs Debian's
`adb` (apt-get install adb) and a device with USB debugging enabled. Prints a side-by-side table
with speed-ups against the first model and writes android_benchmark.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobile import report  # noqa: E402
from mobile.adb import Adb, AdbError  # noqa: E402
from mobile.benchmark_model import BenchmarkModelError, Options, run_on_device  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the exit code (2: bad flags, device or benchmark error)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".tflite files; the first is the reference for speed-ups")
    p.add_argument("--benchmark-binary", required=True, help="Android benchmark_model executable (ELF)")
    p.add_argument("--serial", default=None, help="device serial (adb -s); default: the only device")
    p.add_argument("--adb", default=None, help="adb executable (default: adb on PATH)")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--num-runs", type=int, default=50)
    p.add_argument("--warmup-runs", type=int, default=1)
    p.add_argument("--no-xnnpack", action="store_true", help="--use_xnnpack=false")
    p.add_argument("--use-gpu", action="store_true", help="GPU delegate")
    p.add_argument("--use-nnapi", action="store_true", help="NNAPI delegate")
    p.add_argument("--op-profiling", action="store_true", help="per-op profile, pulled as CSV")
    p.add_argument("--taskset", default=None, help="CPU mask for taskset, e.g. f0 (big cores)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per benchmark run")
    p.add_argument("--output-dir", default="runs/android", help="where JSON, table, chart and CSVs go")
    args = p.parse_args(argv)
    try:
        options = Options(num_threads=args.num_threads, num_runs=args.num_runs, warmup_runs=args.warmup_runs,
                          use_xnnpack=not args.no_xnnpack, use_gpu=args.use_gpu, use_nnapi=args.use_nnapi,
                          enable_op_profiling=args.op_profiling, taskset=args.taskset)
    except ValueError as e:
        p.error(str(e))
    for path in args.models + [args.benchmark_binary]:
        if not os.path.isfile(path):
            p.error(f"file not found: {path}")
    try:
        adb = Adb(serial=args.serial, adb_path=args.adb)
        results = run_on_device(adb, args.benchmark_binary, args.models, options,
                                profile_dir=os.path.join(args.output_dir, "op_profiles"), timeout_s=args.timeout)
    except (AdbError, BenchmarkModelError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    title = f"benchmark_model on {results[0]['device_serial']} ({results[0]['abi']}), {args.num_threads} thread(s)"
    report.publish(results, args.output_dir, "android_benchmark", title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
