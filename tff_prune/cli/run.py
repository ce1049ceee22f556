"""Federated training with automatic server-side filter pruning (or plain FedAvg).

Example:
  tff-prune-run --dataset femnist --model cnn --rounds 20 \
      --clients-per-round 10 --k 2.2 --output-dir runs/pruned

Writes to --output-dir: metrics.jsonl (one JSON object per round), checkpoint.npz
(for --resume), model.keras, model.tflite (float32), summary.json and curves.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Optional, Sequence

from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.flags import add_run_flags, config_from_args


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


EXIT_CODES = {
    0: "the run finished and was exported",
    2: "bad flags, data, output folder or checkpoint (refused before any round ran, or --resume refused)",
    4: "a --workers worker is unreachable, died or froze (continue with --resume)",
    5: "training diverged: a round's aggregate or loss is NaN/inf (the checkpoint keeps the last finite round)",
    6: "the output folder is in use by another run (its PID is named)",
    130: "interrupted (Ctrl-C); continue with --resume",
    143: "terminated (SIGTERM); continue with --resume",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the process exit code (:data:`EXIT_CODES`).

    TFF's local ``worker_binary`` is stopped on every way out: ordinary exits here, a SIGTERM (turned into
    exit 143), and SIGKILL or a crash of this process through the watcher of ``federated/reaper.py``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from tff_prune.federated import rundir

    try:
        config = config_from_args(args)
        rundir.check_output_dir(config.output_dir)
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
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(parser, args, config, variants)
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def _terminate(signum, frame):
    raise SystemExit(143)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, config: ExperimentConfig,
         variants: Sequence[str]) -> int:
    from tff_prune.data import DataError
    from tff_prune.federated import rundir
    from tff_prune.federated.checkpoint import CheckpointError
    from tff_prune.federated.distributed import WorkerError
    from tff_prune.federated.process import stop_worker_processes
    from tff_prune.federated.steps import DivergenceError
    from tff_prune.simulation import simulate

    try:
        summary = simulate(config, variants=variants, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.quiet)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except rundir.OutputDirBusy as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 6
    except DivergenceError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; continue with --resume --output-dir {config.output_dir}",
              file=sys.stderr)
        return 130
    except WorkerError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        stop_worker_processes()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(4)  # TFF's threads may still be retrying the dead worker; do not wait for them
    _print_summary(summary)
    return 0
