#!/usr/bin/env python3
"""Plan + prune time of the pruning engine on Keras Applications (not a test: a measurement).

Example:
  .venv/bin/python benchmarks/plan_prune.py --models efficientnetb0 --repeats 3 --output benchmarks/results

For each model (weights=None, --size x --size x 3 inputs, 1000 classes as shipped), times the
dependency analysis (dependency_graph), plan (ratio 0.3, round_to 8, which includes the graph),
prune_model (inherit: rebuild from config + weight copy) and mask_model, and reports the
coverage (share of Conv/Separable/Dense output channels in prunable groups). Medians of
--repeats, in seconds, with the machine's load average at the start (this machine is shared).
Prints a table and writes plan_prune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("efficientnetb0", "efficientnetv2b0", "mobilenetv3small", "mobilenetv3small_minimalistic", "mobilenetv2",
          "nested_mobilenetv2", "regnetx002", "convnexttiny")


def build(name: str, size: int):
    """The Keras application ``name`` (weights=None) at ``size`` x ``size`` x 3."""
    import tensorflow as tf

    A, shape = tf.keras.applications, (size, size, 3)
    if name == "nested_mobilenetv2":  # the transfer-learning pattern: the backbone is one layer of a head model
        base = A.MobileNetV2(input_shape=shape, alpha=0.35, include_top=False, weights=None)
        inputs = tf.keras.Input(shape)
        x = tf.keras.layers.GlobalAveragePooling2D()(base(inputs))
        return tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    return {"efficientnetb0": lambda: A.EfficientNetB0(input_shape=shape, weights=None),
            "efficientnetv2b0": lambda: A.EfficientNetV2B0(input_shape=shape, weights=None),
            "mobilenetv3small": lambda: A.MobileNetV3Small(input_shape=shape, weights=None),
            "mobilenetv3small_minimalistic": lambda: A.MobileNetV3Small(input_shape=shape, weights=None,
                                                                        minimalistic=True),
            "convnexttiny": lambda: A.ConvNeXtTiny(input_shape=shape, weights=None),
            "mobilenetv2": lambda: A.MobileNetV2(input_shape=shape, alpha=0.35, weights=None),
            "regnetx002": lambda: A.RegNetX002(input_shape=shape, weights=None)}[name]()


def main(argv=None) -> int:
    """CLI entry: times graph, plan, prune and mask (s) per model; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="efficientnetb0", help=f"comma-separated, from {','.join(MODELS)}")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default="benchmarks/results")
    args = p.parse_args(argv)
    names = args.models.split(",")
    if args.repeats < 1 or any(n not in MODELS for n in names):
        p.error(f"--repeats must be >= 1 and --models from {MODELS}")
    from tff_prune import pruning

    rows = []
    for name in names:
        model = build(name, args.size)
        times = {"graph": [], "plan": [], "prune": [], "mask": []}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            t = time.perf_counter()
            graph = pruning.dependency_graph(model)
            times["graph"].append(time.perf_counter() - t)
            t = time.perf_counter()
            plan = pruning.plan(model, pruning.ratio(0.3), round_to=8)
            times["plan"].append(time.perf_counter() - t)
            t = time.perf_counter()
            pruning.prune_model(model, plan)
            times["prune"].append(time.perf_counter() - t)
            t = time.perf_counter()
            pruning.mask_model(model, plan)
            times["mask"].append(time.perf_counter() - t)
        row = {"model": name, "size": args.size, "params": int(model.count_params()),
               "params_after": plan.params_after, "coverage": round(pruning.coverage(model, graph), 4),
               "load_average_1min": round(load, 1),
               **{f"{k}_s": round(statistics.median(v), 3) for k, v in times.items()}}
        row["plan_plus_prune_s"] = round(row["plan_s"] + row["prune_s"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "plan_prune.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"rows": rows, "repeats": args.repeats}, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
