"""Benchmark TFLite models on an Android device with TFLite's benchmark_model, over adb.

Example:
  tff-prune-benchmark-android --benchmark-binary android_aarch64_benchmark_model \
      --num-threads 4 --num-runs 100 --output-dir runs/android fedavg.tflite pruned.tflite pruned_int8.tflite

  tff-prune-benchmark-android --list-devices

Get the binary from TFLite's prebuilt tools (see README: "Android benchmark"). Needs Debian's
`adb` (apt-get install adb) and a device with USB debugging enabled. Passes through
benchmark_model's --use_gpu, --use_nnapi, --use_xnnpack, --report_peak_memory_footprint (the peak
is parsed into the JSON as peak_memory_mb) and --enable_op_profiling (the per-op CSV is pulled and
parsed into <run>_ops.json with a chart <run>_ops.png under op_profiles/). Rows, bars and profiles
are keyed by run: two files both named model.tflite become fedavg/model.tflite and
pruned/model.tflite. Prints a table with speed-ups against the first model and writes
android_benchmark.{json,md,png}. The models run one after the other on the device.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


from mobile import report
from mobile.adb import Adb, AdbError
from mobile.benchmark_model import BenchmarkModelError, Options, run_on_device


def list_devices(p: argparse.ArgumentParser, args) -> int:
    """Prints ``adb devices -l`` as a table (serial, state, description, and what to do); returns 0 or 2."""
    try:
        devices = Adb(adb_path=args.adb, select=False).devices()
    except AdbError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    if not devices:
        print("no Android device attached (adb devices -l lists none): connect a phone with USB debugging "
              "enabled or start an emulator")
        return 0
    hint = {"device": "ready", "unauthorized": "accept the 'Allow USB debugging' prompt",
            "offline": "reconnect or `adb reconnect`", "no permissions": "udev rule / plugdev group, then replug"}
    print("| serial | state | description | next |\n|---|---|---|---|")
    for d in devices:
        print(f"| {d.serial} | {d.state} | {d.description} | {hint.get(d.state, 'not ready')} |")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the exit code (2: bad flags, device or benchmark error)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help=".tflite files; the first is the reference for speed-ups")
    p.add_argument("--list-devices", action="store_true", help="list attached devices (adb devices -l) and exit")
    p.add_argument("--benchmark-binary", default=None, help="Android benchmark_model executable (ELF)")
    p.add_argument("--serial", default=None, help="device serial (adb -s); default: the only device")
    p.add_argument("--adb", default=None, help="adb executable (default: adb on PATH)")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--num-runs", type=int, default=50)
    p.add_argument("--warmup-runs", type=int, default=1)
    p.add_argument("--use-xnnpack", "--use_xnnpack", choices=("true", "false"), default=None,
                   help="XNNPACK delegate (default true)")
    p.add_argument("--no-xnnpack", action="store_true", help="same as --use_xnnpack false")
    p.add_argument("--use-gpu", "--use_gpu", action="store_true", help="GPU delegate")
    p.add_argument("--use-nnapi", "--use_nnapi", action="store_true", help="NNAPI delegate")
    p.add_argument("--report-peak-memory-footprint", "--report_peak_memory_footprint", action="store_true",
                   help="peak memory by periodic monitoring (peak_memory_mb in the JSON)")
    p.add_argument("--op-profiling", "--enable-op-profiling", "--enable_op_profiling", action="store_true",
                   help="per-op profile: CSV pulled, parsed into per-op JSON and a chart")
    p.add_argument("--taskset", default=None, help="CPU mask for taskset, e.g. f0 (big cores)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per benchmark run")
    p.add_argument("--output-dir", default="runs/android", help="where JSON, table, chart and CSVs go")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.list_devices:
        return list_devices(p, args)
    if not args.models:
        p.error("give the .tflite files to benchmark (or --list-devices)")
    if not args.benchmark_binary:
        p.error("--benchmark-binary is required: the Android benchmark_model executable (README: Android benchmark)")
    if args.no_xnnpack and args.use_xnnpack == "true":
        p.error("--no-xnnpack and --use_xnnpack true contradict each other")
    try:
        options = Options(num_threads=args.num_threads, num_runs=args.num_runs, warmup_runs=args.warmup_runs,
                          use_xnnpack=not args.no_xnnpack and args.use_xnnpack != "false", use_gpu=args.use_gpu,
                          use_nnapi=args.use_nnapi, enable_op_profiling=args.op_profiling, taskset=args.taskset,
                          report_peak_memory_footprint=args.report_peak_memory_footprint)
    except ValueError as e:
        p.error(str(e))
    for path in args.models + [args.benchmark_binary]:
        if not os.path.isfile(path):
            p.error(f"file not found: {path}")
    from mobile.host_benchmark import unique_labels

    try:
        adb = Adb(serial=args.serial, adb_path=args.adb, timeout_s=min(60.0, args.timeout))
        results = run_on_device(adb, args.benchmark_binary, args.models, options,
                                profile_dir=os.path.join(args.output_dir, "op_profiles"), timeout_s=args.timeout,
                                labels=unique_labels(args.models))
    except (AdbError, BenchmarkModelError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    title = f"benchmark_model on {results[0]['device_serial']} ({results[0]['abi']}), {args.num_threads} thread(s)"
    report.publish(results, args.output_dir, "android_benchmark", title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
