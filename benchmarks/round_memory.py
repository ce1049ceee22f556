#!/usr/bin/env python3
"""Peak memory (RSS) of one FedAvg training round, full vs pruned architecture.

Example:
  .venv/bin/python benchmarks/round_memory.py --models femnist_cnn,celeba_resnet --output benchmarks/results

Each measurement runs in a fresh Python process (peak RSS never goes down within a process): load
the experiment's data, build the full or pruned (``host_latency.pruned_to``, the authors' parameter
count) architecture's LearningProcess, run one round on ``--clients`` real clients (``--local-epochs``
epochs, batch 32), and read the Linux high-water marks (``VmHWM`` in ``/proc/<pid>/status``, bytes)
of the Python process and of TFF's ``worker_binary`` child that executes the round. ``before`` is
each process's RSS after the process was built and before the round. Prints a table with the
pruned/full ratio of the worker's peak and writes ``round_memory.json``. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _status_bytes(pid: int | str, field: str) -> int:
    """``field`` (VmRSS, VmHWM) of ``/proc/<pid>/status`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no {field} in /proc/{pid}/status")


def child(name: str, label: str, clients: int, epochs: int, data_dir: str | None) -> dict:
    """One measurement (runs in its own process); returns the dict printed as JSON."""
    from host_latency import pruned_to  # a sibling: benchmarks/ is sys.path[0] when run as a script
    from tff_prune.experiments import EXPERIMENTS
    from tff_prune import accounting
    from tff_prune import data as datasets
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.federated.process import build_fed_avg, keras_to_model_weights, stop_worker_processes, worker_pids
    from tff_prune.models import get_model

    exp = EXPERIMENTS[name]
    data = datasets.load(exp.dataset, resolve_data_dir(data_dir))
    model = get_model(exp.model, exp.dataset, seed=0)
    if label == "pruned":
        model, _ = pruned_to(model, exp.paper["params"][1])
    config, cls = model.get_config(), model.__class__
    ids = data.client_ids[:clients]
    spec = data.client_dataset(ids[0], 1, 32, 0).element_spec
    try:
        process = build_fed_avg(lambda: cls.from_config(config), spec, 1e-3, 1.0)
        state = process.set_model_weights(process.initialize(), keras_to_model_weights(model))
        workers = worker_pids()
        before = {"python": _status_bytes(os.getpid(), "VmRSS"),
                  "worker": sum(_status_bytes(w, "VmRSS") for w in workers)}
        t0 = time.perf_counter()
        process.next(state, [data.client_dataset(c, epochs, 32, i) for i, c in enumerate(ids)])
        seconds = time.perf_counter() - t0
        peak = {"python": _status_bytes(os.getpid(), "VmHWM"),
                "worker": sum(_status_bytes(w, "VmHWM") for w in workers)}
    finally:
        stop_worker_processes()
    return {"experiment": name, "model": label, "params": accounting.count_params(model),
            "flops": accounting.count_flops(model), "clients": clients, "local_epochs": epochs,
            "examples": sum(data.num_examples(c) for c in ids) * epochs, "round_seconds": seconds,
            "rss_before_bytes": before, "peak_rss_bytes": peak, "worker_processes": len(workers)}


def main(argv=None) -> int:
    """CLI entry: one child process per (model, full|pruned); prints a table, writes JSON; returns 0 or 2."""
    from tff_prune.experiments import EXPERIMENTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(EXPERIMENTS), help="comma list of reproduce.py experiments")
    p.add_argument("--clients", type=int, default=10, help="clients in the round (default %(default)s)")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--child", nargs=2, metavar=("EXPERIMENT", "full|pruned"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.clients, args.local_epochs, args.data_dir)))
        return 0
    names = args.models.split(",")
    if any(n not in EXPERIMENTS for n in names):
        p.error(f"--models: choose from {', '.join(EXPERIMENTS)}")
    if args.clients < 1 or args.local_epochs < 1:
        p.error("--clients and --local-epochs must be >= 1")
    from tqdm import tqdm

    from tff_prune.report import write_json

    rows = []
    for name in tqdm(names, desc="models", unit="model"):
        for label in ("full", "pruned"):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", name, label, "--clients", str(args.clients),
                   "--local-epochs", str(args.local_epochs)] + (["--data-dir", args.data_dir] if args.data_dir else [])
            # output to a file, not a pipe: a TFF worker that outlived the child could hold a pipe open
            log = os.path.join(args.output, f".round_memory_{name}_{label}.log")
            os.makedirs(args.output, exist_ok=True)
            with open(log, "w") as f:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            with open(log) as f:
                lines = [ln for ln in f if ln.startswith("RESULT ")]
            if rc != 0 or not lines:
                print(f"{name}/{label} failed (exit {rc}); see {log}", file=sys.stderr)
                return 2
            os.remove(log)
            rows.append(json.loads(lines[-1][len("RESULT "):]))
    mib = 2 ** 20
    print("| experiment | model | params | worker RSS before (MiB) | worker peak (MiB) | python peak (MiB) | "
          "round (s) | pruned/full worker peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        full = next(x for x in rows if x["experiment"] == r["experiment"] and x["model"] == "full")
        ratio = r["peak_rss_bytes"]["worker"] / full["peak_rss_bytes"]["worker"]
        print(f"| {r['experiment']} | {r['model']} | {r['params']:,} | {r['rss_before_bytes']['worker'] / mib:.0f} | "
              f"{r['peak_rss_bytes']['worker'] / mib:.0f} | {r['peak_rss_bytes']['python'] / mib:.0f} | "
              f"{r['round_seconds']:.1f} | {ratio:.2f} |")
    print("written", write_json(os.path.join(args.output, "round_memory.json"),
                                {"clients": args.clients, "local_epochs": args.local_epochs, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
