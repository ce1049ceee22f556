#!/usr/bin/env python3
"""Federated training with automatic server-side filter pruning (or plain FedAvg).

Example:
  python scripts/run_simulation.py --dataset femnist --model cnn --rounds 20 \
      --clients-per-round 10 --k 2.2 --output-dir runs/pruned

Writes to --output-dir: metrics.jsonl (one JSON object per round), checkpoint.npz
(for --resume), model.keras, model.tflite (float32), summary.json and curves.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tff_prune.config import ConfigError, ExperimentConfig  # noqa: E402
from tff_prune.flags import add_run_flags, config_from_args  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags: every ``ExperimentConfig`` setting (``tff_prune.flags``) and the run-only ones."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(p)
    return p


def _print_summary(s: dict) -> None:
    acc = s["final_accuracy"]
    print(f"\n== {s['config']['output_dir']}\n"
          f"final test accuracy : {'n/a' if acc is None else f'{100 * acc:.2f}%'}\n"
          f"parameters          : {s['initial_params']:,} -> {s['final_params']:,} "
          f"({s['final_nonzero_params']:,} non-zero trainable)\n"
          f"FLOPs / example     : {s['initial_flops']:,} -> {s['final_flops']:,}\n"
          f"conv widths         : {s['initial_widths']} -> {s['widths']}\n"
          f"bytes (up+down)     : {s['bytes_total'] / 1e6:,.2f} MB over {s['rounds']} rounds\n"
          f"prunes at rounds    : {s['prune_rounds']} ({s['stop_reason'] or 'not stopped'})\n"
          f"TFLite (host, 1 thread, {s['tflite_latency']['num_runs']} runs; parity with Keras on real test images):")
    for name, v in s["tflite_variants"].items():
        flag = "  FLAGGED: outside tolerance" if v["flagged"] else ""
        acc = f"  test acc {100 * v['test_accuracy']:5.2f}%" if "test_accuracy" in v else ""
        print(f"  {name:<8} {v['size_bytes']:>9,} B (gzip {v['gzip_bytes']:>9,} B)  "
              f"median {v['latency_us_median']:8.1f} us  "
              f"top-1 agreement {100 * v['top1_agreement']:5.1f}%  max|diff| {v['max_abs_diff']:.1e}{acc}{flag}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the process exit code (2 for bad flags or data)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.error(str(e))
    from tff_prune.tf_logging import import_tensorflow

    import_tensorflow()  # without TF 2.14's CUDA-registration noise; TF's C++ INFO/WARNING lines off
    from mobile.convert import ConversionError, parse_variants

    try:
        variants = parse_variants(args.tflite_variants)
    except ConversionError as e:
        parser.error(f"--tflite-variants: {e}")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tff_prune").setLevel(logging.INFO)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from mobile.run_export import export_and_summarize
    from tff_prune.data import DataError
    from tff_prune.federated import loop
    from tff_prune.federated.checkpoint import CheckpointError
    from tff_prune.federated.distributed import WorkerError
    from tff_prune.federated.process import stop_worker_processes

    try:
        data = loop.load_data(config)
        with logging_redirect_tqdm():
            result = loop.run(config, data=data, resume=args.resume, overwrite=args.overwrite,
                              progress=not args.quiet)
        test_x, test_y = data.test_arrays()
        summary = export_and_summarize(config, result, test_x, variants, test_y)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except WorkerError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        stop_worker_processes()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(4)  # TFF's threads may still be retrying the dead worker; do not wait for them
    finally:
        stop_worker_processes()
    _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
