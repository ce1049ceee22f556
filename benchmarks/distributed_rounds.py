#!/usr/bin/env python3
"""Round throughput on 1 vs 2 TFF workers (worker_binary on this machine, one CPU core each).

Example:
  .venv/bin/python benchmarks/distributed_rounds.py --clients 10,50 --rounds 2 --output benchmarks/results

For each clients-per-round value and each worker count, starts the workers (pinned to one core each
with `taskset` when available, so 1 and 2 workers are compared at one core per worker), builds the
FEMNIST CNN FedAvg process composed with the worker-side dataset computation
(tff_prune.federated.distributed), runs one warm-up round and then --rounds timed rounds on the same
clients (ordered by distributed.balanced_order, as run_simulation does). Prints a table and writes
distributed_rounds.json: seconds per round (median), client examples per second, and the
2-worker / 1-worker throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def start_workers(n: int) -> tuple[list, list[str]]:
    """Starts ``n`` TFF worker_binary processes on free loopback ports (one core each via taskset if possible).

    Returns:
      (Popen objects, ``127.0.0.1:port`` addresses); the caller kills them.
    """
    import portpicker

    from tff_prune.federated.distributed import worker_command

    procs, addrs = [], []
    pin = shutil.which("taskset") and (os.cpu_count() or 1) >= n
    for i in range(n):
        port = portpicker.pick_unused_port()
        cmd = (["taskset", "-c", str(i)] if pin else []) + worker_command(port)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        addrs.append(f"127.0.0.1:{port}")
    return procs, addrs


def measure(data, clients: list[str], n_workers: int, rounds: int, local_epochs: int) -> dict:
    """Median seconds per FedAvg round (after one warm-up) of the FEMNIST CNN on ``n_workers`` workers.

    Returns:
      dict with ``seconds_per_round`` (s), ``round_times`` (s), ``examples_per_round`` and
      ``examples_per_second`` (client training examples, all epochs).
    """
    from tff_prune.federated import distributed
    from tff_prune.federated.process import build_fed_avg, keras_to_model_weights
    from tff_prune.models import get_model

    procs, addrs = start_workers(n_workers)
    try:
        cluster = distributed.Cluster(addrs, round_timeout=1800)
        spec = data.client_dataset(clients[0], 1, 32, 0).element_spec
        process = distributed.compose(build_fed_avg(lambda: get_model("cnn", "femnist"), spec, 1e-3, 1.0),
                                      distributed.dataset_computation(data.train, data.preprocess_fn,
                                                                      local_epochs, 32))
        weights = keras_to_model_weights(get_model("cnn", "femnist", seed=0))
        state = cluster.call(lambda: process.set_model_weights(process.initialize(), weights), "initialize")
        keys = distributed.balanced_order([distributed.client_key(c, i) for i, c in enumerate(clients)],
                                          [data.num_examples(c) for c in clients], n_workers)
        times, examples = [], 0
        for r in range(rounds + 1):  # round 0 is warm-up (graph compilation on the workers)
            t0 = time.perf_counter()
            out = cluster.call(lambda: process.next(state, keys), f"round {r}")
            dt = time.perf_counter() - t0
            state = out.state
            if r:
                times.append(dt)
                examples = int(out.metrics["client_work"]["train"]["num_examples"])
        sec = statistics.median(times)
        return {"workers": n_workers, "clients_per_round": len(clients), "seconds_per_round": sec,
                "round_times": times, "examples_per_round": examples, "examples_per_second": examples / sec}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main(argv=None) -> int:
    """CLI entry: measures every (clients, workers) setting, prints a table, writes the JSON; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="10,50", help="clients per round to measure (comma list)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds per setting (after one warm-up)")
    p.add_argument("--local-epochs", type=int, default=5, help="client epochs per round (paper: 5)")
    p.add_argument("--data-dir", default=None, help="folder with femnist_leaf_300w.npz")
    p.add_argument("--output", default="benchmarks/results", help="folder for distributed_rounds.json")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    if min(counts) < 2 or args.rounds < 1:
        p.error("--clients values must be >= 2 and --rounds >= 1")
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.data import load_femnist
    from tff_prune.report import write_json

    data = load_femnist(resolve_data_dir(args.data_dir))
    rows = []
    for n in counts:
        clients = data.client_ids[:n]
        one = measure(data, clients, 1, args.rounds, args.local_epochs)
        two = measure(data, clients, 2, args.rounds, args.local_epochs)
        two["throughput_vs_1_worker"] = two["examples_per_second"] / one["examples_per_second"]
        rows += [one, two]
    print("| clients/round | workers | s/round | examples/s | throughput vs 1 worker |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r.get("throughput_vs_1_worker")
        print(f"| {r['clients_per_round']} | {r['workers']} | {r['seconds_per_round']:.2f} | "
              f"{r['examples_per_second']:.0f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    os.makedirs(args.output, exist_ok=True)
    path = write_json(os.path.join(args.output, "distributed_rounds.json"),
                      {"local_epochs": args.local_epochs, "batch_size": 32, "model": "cnn (FEMNIST)",
                       "cpu_count": os.cpu_count(), "pinned_one_core_per_worker": bool(shutil.which("taskset")),
                       "rows": rows})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
