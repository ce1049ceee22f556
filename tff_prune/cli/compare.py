"""Side-by-side comparison of a FedAvg baseline run and a pruned run: table, measured latency, one chart.

Example:
  tff-prune-compare runs/demo/fedavg runs/demo/pruned --output runs/demo/comparison.md

Reads each run's summary.json and metrics.jsonl. Checks what it claims: the baseline must be an
unpruned run, and every setting that decides the sampled clients or the training (seed, rounds,
clients per round, client pool, learning rates, ...) is compared; only when none differs does the
header say "same seed, same sampled clients", else it lists the differences. Latency: the two
runs' .tflite files (model.tflite, model_<variant>.tflite) are timed in this process, interleaved
(A B, B A, ... --repetitions times --runs invokes), on real test images, and the ratio is reported
with its spread; the latencies each run measured at its own end stay in summary.json and are never
divided. Writes comparison.md and comparison.png (accuracy, parameters and cumulative bytes of both
runs on the same axes against round) beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from tff_prune.tf_logging import import_tensorflow

import_tensorflow()  # first, so TF 2.14's CUDA-registration noise never prints

from tff_prune import report


def model_files(run_dir: str, summary: dict) -> dict[str, str]:
    """variant -> the run's ``.tflite`` file in ``run_dir`` (by the summary's file names), where it exists."""
    out = {}
    for variant, row in summary.get("tflite_variants", {}).items():
        name = os.path.basename(str(row.get("path") or ("model.tflite" if variant == "float32"
                                                          else f"model_{variant}.tflite")))
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            out[variant] = path
    return out


def measure_side_by_side(base_files: dict, pruned_files: dict, dataset: str, data_dir: Optional[str],
                         repetitions: int, runs: int, variants: Optional[Sequence[str]] = None) -> tuple[dict, str]:
    """Interleaved host latency of each variant both runs have (:func:`mobile.host_benchmark.compare_interleaved`).

    Returns:
      (variant -> result with labels ``baseline`` / ``pruned``, a note on what was left out and why).

    Raises:
      BenchmarkError: a model file is truncated, corrupt or has a dynamic input.
    """
    from mobile import host_benchmark

    common = [v for v in base_files if v in pruned_files and (variants is None or v in variants)]
    notes = []
    missing = sorted(set(base_files) ^ set(pruned_files))
    if missing:
        notes.append(f"variants in only one run: {', '.join(missing)}")
    if not common:
        return {}, "; ".join(notes + ["no .tflite file is in both run folders (results/ keeps JSON and PNG only)"])
    inputs = None
    if data_dir is not None:
        from tff_prune.data import DataError, sample_images

        try:
            inputs = sample_images(dataset, data_dir, "test", 256, seed=0)[0]
        except (DataError, ValueError) as e:
            notes.append(f"inputs are zeros: no real {dataset} test images ({e})")
    else:
        notes.append("inputs are zeros (--no-data)")
    measured = {}
    for v in common:
        measured[v] = host_benchmark.compare_interleaved({"baseline": base_files[v], "pruned": pruned_files[v]},
                                                         inputs=inputs, repetitions=repetitions,
                                                         runs_per_repetition=runs)
    return measured, "; ".join(notes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the comparison and writes comparison.md and comparison.png; returns the exit code (2: bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline_dir", help="output folder of the --no-prune run")
    p.add_argument("pruned_dir", help="output folder of the pruned run")
    p.add_argument("--output", default=None, help="Markdown file (default: comparison.md beside the two runs); "
                                                  "the chart goes beside it with .png")
    p.add_argument("--repetitions", type=int, default=10, help="interleaved repetitions (>= 2)")
    p.add_argument("--runs", type=int, default=50, help="timed invokes per model per repetition (>= 1)")
    p.add_argument("--no-latency", action="store_true", help="do not time the models")
    p.add_argument("--data-dir", default=None, help="real data for the latency inputs (default: ../shared/data "
                                                    "or $TFF_PRUNE_DATA_DIR)")
    p.add_argument("--no-data", action="store_true", help="time on zeros instead of real test images")
    args = p.parse_args(argv)
    if args.repetitions < 2 or args.runs < 1:
        p.error(f"--repetitions must be >= 2 and --runs >= 1, got {args.repetitions} and {args.runs}")
    try:
        baseline, pruned = report.read_summary(args.baseline_dir), report.read_summary(args.pruned_dir)
        differences = report.check_comparable(baseline, pruned)
    except report.ComparisonError as e:
        p.error(str(e))
    out = args.output or os.path.join(os.path.dirname(os.path.abspath(args.pruned_dir)), report.COMPARISON_FILE)
    measured, note = {}, "--no-latency"
    if not args.no_latency:
        from mobile.host_benchmark import BenchmarkError
        from tff_prune.data.catalog import resolve_data_dir

        try:
            measured, note = measure_side_by_side(
                model_files(args.baseline_dir, baseline), model_files(args.pruned_dir, pruned),
                pruned["config"].get("dataset", "femnist"), None if args.no_data else resolve_data_dir(args.data_dir),
                args.repetitions, args.runs)
        except BenchmarkError as e:
            print(f"{p.prog}: error: {e}", file=sys.stderr)
            return 2
    text = report.comparison_markdown(baseline, pruned, differences, measured, note)
    chart = os.path.splitext(out)[0] + ".png"
    base_recs = report.read_metrics(os.path.join(args.baseline_dir, report.METRICS_FILE))
    pruned_recs = report.read_metrics(os.path.join(args.pruned_dir, report.METRICS_FILE))
    written = []
    if base_recs and pruned_recs:
        cfg = pruned["config"]
        report.plot_comparison(base_recs, pruned_recs, chart,
                               f"{cfg.get('dataset')} / {cfg.get('model')}: FedAvg vs. pruned")
        text += f"\nChart: {os.path.basename(chart)} (both runs on the same axes).\n"
        written.append(chart)
    else:
        text += f"\nNo chart: a run has no {report.METRICS_FILE}.\n"
    report.atomic_write_bytes(out, text.encode())
    if differences:
        print(f"{p.prog}: warning: the runs differ besides pruning: " + "; ".join(differences), file=sys.stderr)
    print(text)
    print("written: " + ", ".join([out] + written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
