#!/usr/bin/env python3
"""The toolkit's round against a plain TFF round, and the local runtime against two pinned local workers.

Example:
  .venv/bin/python benchmarks/round_overhead.py --repeats 3 --output benchmarks/results

Interleaved in one process (A B A B ..., ``--repeats`` times), on the same sampled clients:

- ``toolkit``: ``tff_prune.federated.loop.run`` (FedAvg, the FEMNIST CNN, 10 clients, 5 local epochs) for
  ``--rounds`` rounds in a fresh folder; its own per-round ``wall_seconds`` of the rounds after the first
  (client pipelines from TFF's SQLite-backed ClientData, weights back into Keras, metrics line, checkpoint; the
  central test evaluation only at the last round, which is not timed).
- ``plain``: ``tff.learning.algorithms.build_weighted_fed_avg`` (the same optimizers) with ``process.next`` on
  in-memory ``tf.data`` datasets of the same clients (``from_tensor_slices`` -> shuffle -> repeat -> batch),
  the same rounds.
- ``workers``: the toolkit's run with ``--workers`` on two local ``worker_binary`` processes pinned to one core
  each (``taskset``), against ``toolkit`` (the default local context).

Per repeat the ratio of the medians (toolkit / plain, workers / toolkit); printed and written to
``round_overhead.json`` with the spread (min, max) over repeats. Seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile



def toolkit_round_seconds(data, rounds: int, workers: str | None = None) -> list[float]:
    """``wall_seconds`` of rounds 2..R of a plain-FedAvg ``loop.run`` (seed 0, 10 clients, 5 epochs)."""
    from tff_prune.config import ExperimentConfig
    from tff_prune.federated import loop

    out = tempfile.mkdtemp(prefix="round_overhead_")
    try:
        cfg = ExperimentConfig(rounds=rounds, clients_per_round=10, prune=False, eval_every=10 ** 6, seed=0,
                               output_dir=out, workers=workers)
        records = loop.run(cfg, data=data, progress=False).records
        return [r["wall_seconds"] for r in records[1:-1]]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def plain_round_seconds(data, rounds: int) -> list[float]:
    """Seconds of ``process.next`` for rounds 2..R-1 of ``build_weighted_fed_avg`` on in-memory datasets."""
    import time

    import tensorflow as tf
    import tensorflow_federated as tff

    from tff_prune.federated.process import keras_to_model_weights
    from tff_prune.federated.sampling import derive_seed, sample_clients
    from tff_prune.models import get_model

    def model_fn():
        return tff.learning.models.from_keras_model(
            get_model("cnn", "femnist"), input_spec=spec, loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

    spec = data.client_dataset(data.client_ids[0], 1, 32, 0).element_spec
    process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn, client_optimizer_fn=tff.learning.optimizers.build_adam(learning_rate=1e-3),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
        client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES)
    get_model("cnn", "femnist")  # eager instantiation (see process.build_fed_avg)
    state = process.set_model_weights(process.initialize(), keras_to_model_weights(get_model("cnn", "femnist", seed=0)))
    arrays = {}
    times = []
    for r in range(1, rounds):
        clients = sample_clients(data.client_ids, 10, 0, r)
        for cid in clients:
            if cid not in arrays:
                arrays[cid] = data.train_arrays([cid])
        ds = [tf.data.Dataset.from_tensor_slices(arrays[cid]).shuffle(512, seed=derive_seed(0, r, i))
              .repeat(5).batch(32) for i, cid in enumerate(clients)]
        t0 = time.perf_counter()
        state = process.next(state, ds).state
        if r > 1:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    """Runs the interleaved measurement; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="A B pairs per comparison (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per measured run; 2..R-1 are timed")
    p.add_argument("--no-workers", action="store_true", help="skip the local-vs-workers comparison")
    p.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    from tff_prune.tf_logging import import_tensorflow

    import_tensorflow()
    from distributed_rounds import start_workers  # a sibling: benchmarks/ is sys.path[0] when run as a script
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.data import load_femnist
    from tff_prune.federated.process import stop_worker_processes

    data = load_femnist(resolve_data_dir(None))
    result = {"rounds_timed_per_run": args.rounds - 2, "clients_per_round": 10, "local_epochs": 5, "repeats": []}
    procs = []
    try:
        addrs = None
        if not args.no_workers:
            procs, addrs = start_workers(2)
        for i in range(args.repeats):
            rep = {"toolkit_s": toolkit_round_seconds(data, args.rounds), "plain_s": plain_round_seconds(data, args.rounds)}
            rep["toolkit_over_plain"] = statistics.median(rep["toolkit_s"]) / statistics.median(rep["plain_s"])
            if addrs:
                rep["workers_s"] = toolkit_round_seconds(data, args.rounds, workers=",".join(addrs))
                rep["workers_over_local"] = statistics.median(rep["workers_s"]) / statistics.median(rep["toolkit_s"])
            result["repeats"].append(rep)
            print(json.dumps({k: v for k, v in rep.items() if not k.endswith("_s")}), flush=True)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        stop_worker_processes()
    for key in ("toolkit_over_plain", "workers_over_local"):
        vals = [r[key] for r in result["repeats"] if key in r]
        if vals:
            result[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            print(f"{key}: median {statistics.median(vals):.3f} (min {min(vals):.3f}, max {max(vals):.3f}, "
                  f"{len(vals)} repeats)")
    os.makedirs(args.output, exist_ok=True)
    from tff_prune.report import write_json

    write_json(os.path.join(args.output, "round_overhead.json"), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
