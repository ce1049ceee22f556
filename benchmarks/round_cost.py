#!/usr/bin/env python3
"""Seconds per round, full vs pruned architecture: our TFF process and a plain Keras fit loop (the reference).

Example:
  .venv/bin/python benchmarks/round_cost.py --clients 10 --rounds 2 --output benchmarks/results

Same clients, same local work (5 epochs, batch 32, Adam 1e-3) for: the FEMNIST CNN at the paper's widths
(32, 64) and at the authors' pruned widths (17, 43). "tff" runs tff_prune's LearningProcess on TFF's local
C++ runtime; "keras" is a sequential loop like the authors' notebooks (per client: set the global weights,
model.fit, collect; then the example-weighted mean). Medians over --rounds after one warm-up round. Prints
a table with the pruned / full time ratio next to the FLOPs ratio and writes round_cost.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tff_rounds(data, clients, widths, rounds, epochs):
    """Seconds of each timed FedAvg round (TFF local runtime) of the FEMNIST CNN at ``widths``, after a warm-up."""
    from tff_prune.federated.process import build_fed_avg, keras_to_model_weights
    from tff_prune.models import get_model

    spec = data.client_dataset(clients[0], 1, 32, 0).element_spec
    process = build_fed_avg(lambda: get_model("cnn", "femnist", widths=widths), spec, 1e-3, 1.0)
    state = process.set_model_weights(process.initialize(),
                                      keras_to_model_weights(get_model("cnn", "femnist", widths=widths, seed=0)))
    times = []
    for r in range(rounds + 1):
        ds = [data.client_dataset(c, epochs, 32, i) for i, c in enumerate(clients)]
        t0 = time.perf_counter()
        state = process.next(state, ds).state
        if r:
            times.append(time.perf_counter() - t0)
    return times


def keras_rounds(data, clients, widths, rounds, epochs):
    """Seconds of each timed round of a sequential Keras ``fit`` loop + example-weighted mean, after a warm-up."""
    import numpy as np
    import tensorflow as tf

    from tff_prune.models import get_model

    model = get_model("cnn", "femnist", widths=widths, seed=0)
    model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    global_w = model.get_weights()
    sizes = [data.num_examples(c) for c in clients]
    times = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        updates = []
        for i, c in enumerate(clients):
            model.set_weights(global_w)
            model.optimizer = tf.keras.optimizers.Adam(1e-3)  # fresh client optimizer, as TFF's
            model.compile(model.optimizer, "sparse_categorical_crossentropy")
            model.fit(data.client_dataset(c, 1, 32, i), epochs=epochs, verbose=0)
            updates.append(model.get_weights())
        global_w = [np.average(np.stack(ws), axis=0, weights=sizes) for ws in zip(*updates)]
        if r:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    """CLI entry: full vs pruned widths on both runtimes, prints a table, writes the JSON; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--local-epochs", type=int, default=5)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.local_epochs < 1:
        p.error("--clients, --rounds and --local-epochs must be >= 1")
    from tff_prune import accounting
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.data import load_femnist
    from tff_prune.federated.process import stop_worker_processes
    from tff_prune.models import get_model
    from tff_prune.report import write_json

    data = load_femnist(resolve_data_dir(args.data_dir))
    clients = data.client_ids[:args.clients]
    examples = sum(data.num_examples(c) for c in clients) * args.local_epochs
    rows = []
    try:
        for label, widths in (("full", (32, 64)), ("pruned", (17, 43))):
            flops = accounting.count_flops(get_model("cnn", "femnist", widths=widths))
            for runtime, fn in (("tff", tff_rounds), ("keras", keras_rounds)):
                sec = statistics.median(fn(data, clients, widths, args.rounds, args.local_epochs))
                rows.append({"model": label, "widths": widths, "flops": flops, "runtime": runtime,
                             "seconds_per_round": sec, "examples_per_second": examples / sec})
    finally:
        stop_worker_processes()
    by = {(r["model"], r["runtime"]): r for r in rows}
    print("| runtime | full s/round | pruned s/round | pruned/full time | pruned/full FLOPs | examples/s full |")
    print("|---|---:|---:|---:|---:|---:|")
    for rt in ("tff", "keras"):
        f, q = by[("full", rt)], by[("pruned", rt)]
        print(f"| {rt} | {f['seconds_per_round']:.2f} | {q['seconds_per_round']:.2f} | "
              f"{q['seconds_per_round'] / f['seconds_per_round']:.2f} | {q['flops'] / f['flops']:.2f} | "
              f"{f['examples_per_second']:.0f} |")
    os.makedirs(args.output, exist_ok=True)
    print("written", write_json(os.path.join(args.output, "round_cost.json"),
                                {"clients": args.clients, "local_epochs": args.local_epochs, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
