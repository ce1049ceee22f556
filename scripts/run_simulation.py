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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar

from tff_prune.config import ConfigError, ExperimentConfig, resolve_data_dir  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags (each maps to an ``ExperimentConfig`` field)."""
    d = ExperimentConfig.__dataclass_fields__
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default=d["dataset"].default, help="femnist or celeba (default %(default)s)")
    g.add_argument("--model", default=d["model"].default,
                   help="the paper's architectures: cnn, resnet (ResNet-7) or inception (default %(default)s)")
    g.add_argument("--data-dir", default=None,
                   help="folder with femnist_leaf_300w.npz / celeba_wild_crops84_276ids.npz "
                        "(default: $TFF_PRUNE_DATA_DIR, else ../shared/data)")
    g.add_argument("--femnist-crop", action="store_true", help="the authors' crop [5:20,5:20] resized to 28x28")
    g.add_argument("--celeba-attribute", default=d["celeba_attribute"].default,
                   help="CelebA label attribute, TFF's name (default %(default)s, as the paper)")
    g.add_argument("--max-clients", type=int, default=None,
                   help="use only the first N training clients (default: all)")
    g = p.add_argument_group("federated training (FedAvg)")
    g.add_argument("--rounds", type=int, default=d["rounds"].default, help="federated rounds (default %(default)s)")
    g.add_argument("--clients-per-round", type=int, default=d["clients_per_round"].default,
                   help="clients sampled per round (default %(default)s)")
    g.add_argument("--local-epochs", type=int, default=d["local_epochs"].default,
                   help="client epochs per round (paper: 5)")
    g.add_argument("--batch-size", type=int, default=d["batch_size"].default, help="client batch (paper: 32)")
    g.add_argument("--client-optimizer", default=d["client_optimizer"].default,
                   help="adam (the paper's, fresh moments per client and round) or sgd (default %(default)s)")
    g.add_argument("--client-lr", type=float, default=d["client_lr"].default,
                   help="client learning rate (default %(default)s, the paper's Adam rate)")
    g.add_argument("--server-lr", type=float, default=d["server_lr"].default,
                   help="server SGD learning rate (1.0 = plain FedAvg)")
    g.add_argument("--seed", type=int, default=d["seed"].default, help="seed for sampling, shuffling and init")
    g.add_argument("--eval-every", type=int, default=d["eval_every"].default,
                   help="evaluate the global model every N rounds (and at the end)")
    g = p.add_argument_group("automatic pruning")
    g.add_argument("--no-prune", action="store_true", help="plain FedAvg baseline, no pruning")
    g.add_argument("--criterion", default=d["criterion"].default,
                   help="band (the paper's mu +- k*sigma per group), band_low (only filters below mu - k*sigma "
                        "go) or ratio (--prune-ratio of each group)")
    g.add_argument("--k", type=float, default=d["k"].default, help="band mu +- k*sigma (paper: 2.2 on FEMNIST)")
    g.add_argument("--prune-ratio", type=float, default=d["prune_ratio"].default,
                   help="with --criterion ratio: fraction of each group's channels removed per prune")
    g.add_argument("--round-to", type=int, default=d["round_to"].default,
                   help="each pruned group keeps a multiple of N channels (8 suits XNNPACK; default 1)")
    g.add_argument("--round-mode", choices=("up", "down", "final"), default=d["round_mode"].default,
                   help="reach the multiple of --round-to in every prune by putting back the strongest removed "
                        "channels (up, default) or removing the weakest kept ones (down); or prune without "
                        "rounding and round every group down once, when pruning stops (final). The band removes a "
                        "few filters per round: 'up' then prunes nothing, 'down' shrinks every round; use 'final'")
    g.add_argument("--min-channels", type=int, default=d["min_channels"].default,
                   help="fewest channels a group keeps (default 1)")
    g.add_argument("--max-prune-round", type=int, default=d["max_prune_round"].default,
                   help="last round after which a prune may happen (paper: 50)")
    g.add_argument("--patience", type=int, default=d["patience"].default,
                   help="rounds without a parameter drop before pruning stops (paper: 3)")
    g.add_argument("--method", default=d["method"].default,
                   help="structured (the paper's filter pruning, default) or magnitude (baseline: tfmot "
                        "prune_low_magnitude, unstructured, masks set on the server; sparsity ramps up to "
                        "--target-sparsity by --max-prune-round)")
    g.add_argument("--target-sparsity", type=float, default=d["target_sparsity"].default,
                   help="with --method magnitude: final fraction of zeros in every Conv2D/Dense kernel "
                        "(default %(default)s)")
    g.add_argument("--weights", choices=("inherit", "reinit"), default=d["weights"].default,
                   help="survivors keep their weights (inherit) or restart from fresh init (reinit, the authors')")
    g = p.add_argument_group("distributed (TFF's remote runtime)")
    g.add_argument("--workers", default=None,
                   help="host:port,host:port of TFF workers (scripts/run_worker.py); clients are split across them "
                        "each round. Default: TFF's local runtime")
    g.add_argument("--round-timeout", type=float, default=d["round_timeout"].default,
                   help="seconds a round may take on the workers before the run stops naming the silent worker "
                        "(default %(default)s)")
    g = p.add_argument_group("outputs")
    g.add_argument("--output-dir", default=d["output_dir"].default, help="where results go")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last round")
    g.add_argument("--overwrite", action="store_true", help="start afresh in an --output-dir that holds a run")
    g.add_argument("--latency-runs", type=int, default=d["latency_runs"].default,
                   help="timed TFLite invokes for the host latency (default %(default)s)")
    g.add_argument("--qat-rounds", type=int, default=d["qat_rounds"].default,
                   help="quantization-aware training (tfmot) of the final architecture in the last N rounds; "
                        "exports qat_int8 next to post-training int8 (default: 0, off)")
    g.add_argument("--tflite-variants", default="float32,float16,dynamic,int8",
                   help="TFLite variants of the final model (float32 is always written as model.tflite)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Builds and validates the ExperimentConfig (raises ConfigError naming the flag)."""
    return ExperimentConfig(
        dataset=args.dataset, model=args.model, rounds=args.rounds, clients_per_round=args.clients_per_round,
        local_epochs=args.local_epochs, batch_size=args.batch_size, client_lr=args.client_lr,
        client_optimizer=args.client_optimizer,
        server_lr=args.server_lr, k=args.k, criterion=args.criterion, prune_ratio=args.prune_ratio,
        round_to=args.round_to, round_mode=args.round_mode, min_channels=args.min_channels,
        max_prune_round=args.max_prune_round,
        patience=args.patience,
        weights=args.weights, prune=not args.no_prune, seed=args.seed, eval_every=args.eval_every,
        output_dir=os.path.abspath(args.output_dir), data_dir=resolve_data_dir(args.data_dir),
        femnist_crop=args.femnist_crop, celeba_attribute=args.celeba_attribute, max_clients=args.max_clients,
        latency_runs=args.latency_runs,
        qat_rounds=args.qat_rounds, method=args.method, target_sparsity=args.target_sparsity,
        workers=args.workers, round_timeout=args.round_timeout)


def export_and_summarize(config: ExperimentConfig, result, test_x, variants=("float32",), test_y=None) -> dict:
    """Saves model.keras and the TFLite variants, measures their latency, writes summary.json and curves.png.

    ``model.tflite`` is the float32 variant; others are ``model_<variant>.tflite``, each with a
    ``.json`` sidecar (I/O description and parity with Keras on real test images) and ``labels.txt``.
    After QAT, the float variants come from the QAT model's float weights and a ``qat_int8``
    variant (``model_qat_int8.tflite``) from its learned ranges; ``model_qat.h5`` is the QAT model.
    With ``test_y``, each variant's top-1 accuracy on the whole test set is reported.

    Returns:
      the summary dict (also written to ``<output_dir>/summary.json``).
    """
    import numpy as np

    from mobile import convert, host_benchmark
    from mobile.export import export_variants
    from tff_prune import report
    from tff_prune.federated import qat

    out = config.output_dir
    qat_model = result.model if qat.is_qat_model(result.model) else None
    float_model = result.model
    if qat_model is not None:
        arch = result.float_architecture
        float_model = qat.strip_quantization(qat_model, arch.__class__.from_config(arch.get_config()))
        # tfmot QAT models do not reload from the .keras format (variable lists differ); H5 does,
        # inside tff_prune.federated.qat.quantize_scope().
        _save_keras(qat_model, os.path.join(out, "model_qat.h5"))
    keras_path = _save_keras(float_model, os.path.join(out, "model.keras"))
    variants = ["float32"] + [v for v in variants if v != "float32"]
    rows = export_variants(float_model, variants, config.dataset, config.data_dir, out,
                           lambda v: "model.tflite" if v == "float32" else f"model_{v}.tflite",
                           crop=config.femnist_crop, seed=config.seed, qat_model=qat_model,
                           celeba_attribute=config.celeba_attribute)
    tflite = {}
    for row in rows:
        lat = host_benchmark.benchmark(row["path"], num_threads=1, num_runs=config.latency_runs,
                                       warmup_runs=20, inputs=test_x)
        tflite[row["variant"]] = {**row, "latency_us_median": lat["inference_median_us"], "latency": lat}
        if test_y is not None:
            with open(row["path"], "rb") as f:
                pred = convert.run_tflite(f.read(), test_x).argmax(-1)
            tflite[row["variant"]]["test_accuracy"] = float(np.mean(pred == test_y))
    tflite_path, tflite_bytes, latency = tflite["float32"]["path"], tflite["float32"]["size_bytes"], \
        tflite["float32"]["latency"]
    records = result.records
    summary = {
        "config": config.to_dict(),
        "rounds": records[-1]["round"],
        "initial_params": result.initial["params"], "final_params": result.final["params"],
        "final_nonzero_params": records[-1]["nonzero_params"],
        "final_kernel_sparsity": records[-1].get("kernel_sparsity"),
        "initial_flops": result.initial["flops"], "final_flops": result.final["flops"],
        "initial_widths": result.initial["widths"], "widths": result.final["widths"],
        "final_accuracy": report.last_accuracy(records),
        "best_accuracy": max((r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None),
                             default=None),
        "bytes_down_total": records[-1]["cumulative_bytes_down"], "bytes_up_total": records[-1]["cumulative_bytes_up"],
        "bytes_total": records[-1]["cumulative_bytes"],
        "prune_rounds": [r["round"] for r in records if r["prune"]["action"] == "accepted"],
        "stop_reason": result.stop_reason,
        "wall_seconds_total": sum(r["wall_seconds"] for r in records),
        "keras_path": keras_path, "tflite_path": tflite_path, "tflite_bytes": tflite_bytes,
        "tflite_latency_us_median": latency["inference_median_us"], "tflite_latency": latency,
        "tflite_variants": tflite,
    }
    if qat_model is not None:
        summary["qat"] = {
            "rounds": config.qat_rounds, "keras_qat_accuracy": report.last_accuracy(records),
            "tflite_qat_int8_accuracy": tflite["qat_int8"].get("test_accuracy"),
            "tflite_ptq_int8_accuracy": tflite.get("int8", {}).get("test_accuracy"),
            "tflite_float32_accuracy": tflite["float32"].get("test_accuracy"),
            "note": "float32/float16/dynamic/int8 (post-training) use the QAT model's float weights; "
                    "qat_int8 uses its federated-averaged quantization ranges",
        }
    report.write_json(os.path.join(out, report.SUMMARY_FILE), summary)
    title = f"{config.dataset}/{config.model} " + (
        "FedAvg baseline" if not config.prune else
        f"tfmot magnitude pruning (sparsity {config.target_sparsity:.3f})" if config.method == "magnitude" else
        f"pruned (k={config.k}, {config.weights})")
    report.plot_curves(records, os.path.join(out, report.CURVES_FILE), title)
    return summary


def _save_keras(model, path: str) -> str:
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(os.path.dirname(path), f".{stem}.tmp{ext}")
    model.save(tmp)
    os.replace(tmp, path)
    return path


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
    from mobile.convert import ConversionError, parse_variants

    try:
        variants = parse_variants(args.tflite_variants)
    except ConversionError as e:
        parser.error(f"--tflite-variants: {e}")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tff_prune").setLevel(logging.INFO)
    from tqdm.contrib.logging import logging_redirect_tqdm

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
