"""Centralized diagnostic behind results/trials/celeba_batchnorm_one_celebrity_batches.json (not a federated run).

CelebA (the label given by --attribute), the 248 training celebrities' photos, Adam 1e-3 (or --optimizer, --lr), seed 0, --epochs
epochs; test accuracy on the 28 test celebrities after each epoch. ``one_celebrity``: every batch holds the
photos of one celebrity only (at most 32; celebrities in shuffled order), as a CelebA client trains;
``mixed``: batches of 32 from the pooled, shuffled photos. Adds ``<model>/<batches>`` to the JSON (rows already
there are kept). Usage:

    .venv/bin/python results/trials/celeba_one_celebrity_batches.py --model mobilenetv3small_gn --batches one_celebrity
"""

import argparse
import json
import os
import time

import numpy as np

from tff_prune.tf_logging import import_tensorflow  # the package as `make setup` installs it  # noqa: E402

tf = import_tensorflow()
from tff_prune.data import load  # noqa: E402
from tff_prune.data.catalog import resolve_data_dir  # noqa: E402
from tff_prune.models import get_model  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "celeba_batchnorm_one_celebrity_batches.json")


def main():
    """Parses the flags, trains one model for --epochs epochs, and adds its per-epoch rows to the JSON (temp file, then rename)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--batches", choices=("one_celebrity", "mixed"), required=True)
    p.add_argument("--attribute", default="male")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=None, help="learning rate (Adam: 1e-3, SGD: 0.05)")
    a = p.parse_args()
    lr = a.lr if a.lr is not None else (1e-3 if a.optimizer == "adam" else 0.05)
    data = load("celeba", resolve_data_dir(None), celeba_attribute=a.attribute)
    rng = np.random.default_rng(0)
    per_client = [data.train_arrays([c]) for c in data.client_ids]
    x_test, y_test = data.test_arrays()
    tf.keras.utils.set_random_seed(0)
    model = get_model(a.model, "celeba", seed=0)
    optimizer = tf.keras.optimizers.Adam(lr) if a.optimizer == "adam" else tf.keras.optimizers.SGD(lr)
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    rows = []
    for epoch in range(1, a.epochs + 1):
        if a.batches == "one_celebrity":
            batches = [(x[i:i + 32], y[i:i + 32]) for k in rng.permutation(len(per_client))
                       for x, y in [per_client[k]] for i in range(0, len(x), 32)]
        else:
            x_all = np.concatenate([x for x, _ in per_client])
            y_all = np.concatenate([y for _, y in per_client])
            order = rng.permutation(len(x_all))
            batches = [(x_all[order[i:i + 32]], y_all[order[i:i + 32]]) for i in range(0, len(order), 32)]
        start = time.time()
        for x, y in batches:
            model.train_on_batch(x, y)
        probs = model.predict(x_test, batch_size=256, verbose=0)
        loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        rows.append(dict(epoch=epoch, steps=len(batches), test_accuracy=round(float(acc), 4),
                         test_loss=round(float(loss), 4),
                         share_predicted_1=round(float((probs.argmax(1) == 1).mean()), 4),
                         seconds=round(time.time() - start, 1)))
        print(rows[-1], flush=True)
    doc = json.load(open(OUT)) if os.path.exists(OUT) else {"runs": {}}
    key = f"{a.model}/{a.batches}" + ("" if a.attribute == "male" else f"/{a.attribute}") + (
        "" if (a.optimizer, lr) == ("adam", 1e-3) else f"/{a.optimizer}_{lr:g}")
    doc["runs"][key] = rows
    with open(OUT + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(OUT + ".tmp", OUT)


if __name__ == "__main__":
    main()
