#!/usr/bin/env python3
"""Host TFLite latency of every conversion variant, full vs pruned, at 1 and 2 threads.

Example:
  .venv/bin/python benchmarks/host_latency.py --runs 300 --output benchmarks/results
  .venv/bin/python benchmarks/host_latency.py --models femnist_cnn --threads 1

For each of the paper's five model/dataset pairs (``tff_prune.experiments``): the full
architecture, and a pruned one with the authors' reported parameter count (our engine, ``ratio``
criterion: the same fraction of every group's filters, bisected until the parameter count is within
1% of theirs; random weights, latency depends on the architecture). Each is converted to float32,
float16, dynamic-range and int8 (calibrated on 200 real training images) and timed with
``mobile.host_benchmark`` (tflite_runtime interpreter, default XNNPACK delegate, real test images,
20 warm-up invokes, ``--runs`` timed invokes). Prints one table per pair with median and p95 (µs)
and the pruned/full ratio of medians, and writes ``host_latency.json``.

A laptop/server CPU is not a phone: these ratios say how much of the FLOPs cut the TFLite kernels turn
into time on this host; ``tff-prune-benchmark-android`` measures a device.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = ("float32", "float16", "dynamic", "int8")


def pruned_to(model, target_params: int, tolerance: float = 0.01):
    """``model`` pruned with ``ratio(r)`` in every group; ``r`` bisected towards ``target_params`` parameters.

    Returns:
      (pruned Keras model, r). The count is within ``tolerance`` (relative) of the target, or the closest
      the 30 bisection steps reached.
    """
    from tff_prune import pruning

    lo, hi, best = 0.0, 0.99, None
    for _ in range(30):
        r = (lo + hi) / 2
        p = pruning.plan(model, pruning.ratio(r))
        if best is None or abs(p.params_after - target_params) < abs(best[0].params_after - target_params):
            best = (p, r)
        if abs(p.params_after - target_params) <= tolerance * target_params:
            break
        lo, hi = (r, hi) if p.params_after > target_params else (lo, r)
    return pruning.prune_model(model, best[0]), best[1]


def measure(keras_model, threads, runs: int, rep, test_x) -> dict:
    """{variant: {threads: host_benchmark result + size_bytes}} for one Keras model."""
    from mobile import convert, host_benchmark

    out = {}
    for variant in VARIANTS:
        data = convert.convert(keras_model, variant, representative_data=rep)
        out[variant] = {"size_bytes": len(data)}
        for t in threads:
            out[variant][str(t)] = host_benchmark.benchmark(data, num_threads=t, num_runs=runs, warmup_runs=20,
                                                            inputs=test_x)
    return out


def main(argv=None) -> int:
    """CLI entry: prints the tables and writes host_latency.json; returns 0 (2 on bad flags)."""
    from tff_prune.experiments import EXPERIMENTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(EXPERIMENTS), help="comma list of reproduce.py experiments")
    p.add_argument("--threads", default="1,2", help="interpreter thread counts (comma list)")
    p.add_argument("--runs", type=int, default=300, help="timed invokes per measurement")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args(argv)
    names = args.models.split(",")
    if any(n not in EXPERIMENTS for n in names):
        p.error(f"--models: choose from {', '.join(EXPERIMENTS)}")
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads: comma list of integers, got {args.threads!r}")
    if args.runs < 1 or any(t < 1 for t in threads):
        p.error("--runs and --threads must be >= 1")

    from tqdm import tqdm

    from tff_prune import accounting
    from tff_prune.data.catalog import resolve_data_dir
    from tff_prune.data import sample_images
    from tff_prune.models import get_model
    from tff_prune.report import write_json

    data_dir = resolve_data_dir(args.data_dir)
    results = {"threads": threads, "runs": args.runs, "cpu_count": os.cpu_count(), "models": {}}
    for name in tqdm(names, desc="models", unit="model"):
        exp = EXPERIMENTS[name]
        rep, _ = sample_images(exp.dataset, data_dir, "train", 200, seed=0)
        test_x, _ = sample_images(exp.dataset, data_dir, "test", 256, seed=1)
        full = get_model(exp.model, exp.dataset, seed=0)
        pruned, r = pruned_to(full, exp.paper["params"][1])
        entry = {"ratio": r}
        for label, m in (("full", full), ("pruned", pruned)):
            entry[label] = {"params": accounting.count_params(m), "flops": accounting.count_flops(m),
                            "variants": measure(m, threads, args.runs, rep, test_x)}
        results["models"][name] = entry
        f, q = entry["full"], entry["pruned"]
        print(f"\n{name}: params {f['params']:,} -> {q['params']:,} (ratio({r:.3f}) per group; authors "
              f"{exp.paper['params'][1]:,}), FLOPs ratio {q['flops'] / f['flops']:.2f}")
        print("| variant | threads | full median (µs) | full p95 | pruned median (µs) | pruned p95 | "
              "pruned/full | size full / pruned (B) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for v in VARIANTS:
            for t in threads:
                a, b = f["variants"][v][str(t)], q["variants"][v][str(t)]
                print(f"| {v} | {t} | {a['inference_median_us']:.0f} | {a['inference_p95_us']:.0f} | "
                      f"{b['inference_median_us']:.0f} | {b['inference_p95_us']:.0f} | "
                      f"{b['inference_median_us'] / a['inference_median_us']:.2f} | "
                      f"{f['variants'][v]['size_bytes']:,} / {q['variants'][v]['size_bytes']:,} |")
    os.makedirs(args.output, exist_ok=True)
    print("written", write_json(os.path.join(args.output, "host_latency.json"), results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
