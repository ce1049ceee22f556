#!/usr/bin/env python3
"""Cost of one server-side prune event, per paper architecture.

Example:
  .venv/bin/python benchmarks/prune_event.py --repeats 3 --output benchmarks/results

For each model (cnn, resnet, inception on FEMNIST and CelebA shapes), times the four steps of an accepted
prune in the federated loop: dependency analysis + plan (band k=2.0 on the trained-like weights of a
seeded model), surgery (prune_model, inherit), building the new TFF LearningProcess
(build_weighted_fed_avg), and moving the weights in (initialize + set_model_weights). Medians of
--repeats, in ms. Prints a table and writes prune_event.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    """CLI entry: times plan, surgery, process build and weight transfer (ms) per model; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    import tensorflow as tf

    from tff_prune import pruning
    from tff_prune.federated.process import build_fed_avg, keras_to_model_weights, stop_worker_processes
    from tff_prune.models import get_model, input_shape
    from tff_prune.report import write_json

    rows = []
    try:
        for dataset in ("femnist", "celeba"):
            spec = (tf.TensorSpec((None,) + input_shape(dataset), tf.float32), tf.TensorSpec((None,), tf.int32))
            for name in ("cnn", "resnet", "inception"):
                times = {"plan_ms": [], "surgery_ms": [], "process_build_ms": [], "weight_transfer_ms": []}
                for rep in range(args.repeats):
                    model = get_model(name, dataset, seed=rep)
                    t0 = time.perf_counter()
                    plan = pruning.plan(model, pruning.band(2.0))
                    t1 = time.perf_counter()
                    small = pruning.prune_model(model, plan)
                    t2 = time.perf_counter()
                    config = small.get_config()
                    process = build_fed_avg(lambda: small.__class__.from_config(config), spec, 1e-3, 1.0)
                    t3 = time.perf_counter()
                    process.set_model_weights(process.initialize(), keras_to_model_weights(small))
                    t4 = time.perf_counter()
                    for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        times[key].append(1000 * dt)
                row = {"dataset": dataset, "model": name, "params_before": plan.params_before,
                       "params_after": plan.params_after, **{k: statistics.median(v) for k, v in times.items()}}
                row["total_ms"] = sum(row[k] for k in times)
                rows.append(row)
                print(f"{dataset:8s} {name:10s} plan {row['plan_ms']:7.1f} ms  surgery {row['surgery_ms']:7.1f} ms  "
                      f"process {row['process_build_ms']:7.1f} ms  weights {row['weight_transfer_ms']:7.1f} ms  "
                      f"total {row['total_ms']:7.1f} ms", flush=True)
    finally:
        stop_worker_processes()
    os.makedirs(args.output, exist_ok=True)
    print("written", write_json(os.path.join(args.output, "prune_event.json"), {"repeats": args.repeats, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
