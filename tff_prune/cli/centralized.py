"""Centralized reference: one model trained on all training clients' examples pooled, no federation.

Example:
  tff-prune-centralized --dataset celeba --model resnet --epochs 10 \
      --output-dir results/celeba_resnet/centralized

Same model, batch (32) and optimizer (Adam 1e-3) as the federated clients; evaluated on the same test
clients as run_simulation.py after every epoch. Writes to --output-dir: summary.json (per-epoch curve,
final and best test accuracy, the test set's majority-class share) and curves.png. The gap to FedAvg is
what the non-IID client split costs on this data (see tff_prune/centralized.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from tff_prune.tf_logging import import_tensorflow

import_tensorflow()  # first, so TF 2.14's CUDA-registration noise never prints

from tff_prune.config import DATASETS, MODELS


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="femnist", choices=DATASETS, help="default %(default)s")
    p.add_argument("--model", default="cnn", choices=MODELS, help="the paper's architectures (default %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the packed data (default: $TFF_PRUNE_DATA_DIR, else ../shared/data)")
    p.add_argument("--femnist-crop", action="store_true", help="the authors' crop [5:20,5:20] resized to 28x28")
    p.add_argument("--celeba-attribute", default="male", help="CelebA label attribute, TFF's name (default male)")
    p.add_argument("--max-clients", type=int, default=None, help="pool only the first N training clients")
    p.add_argument("--epochs", type=int, default=10, help="passes over the pooled training set (default 10)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32 (the paper's client batch)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, the paper's)")
    p.add_argument("--seed", type=int, default=0, help="initialiser and shuffling seed")
    p.add_argument("--output-dir", required=True, help="where summary.json and curves.png go")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Trains, writes summary.json and curves.png; returns 0, or 2 on bad flags / missing data."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if v < 1:
            parser.error(f"{flag}: must be >= 1, got {v}")
    if args.lr <= 0:
        parser.error(f"--lr: must be > 0, got {args.lr}")
    if args.max_clients is not None and args.max_clients < 1:
        parser.error(f"--max-clients: must be >= 1, got {args.max_clients}")
    from tff_prune.centralized import run_centralized
    from tff_prune.data import DataError

    try:
        summary, result = run_centralized(args.dataset, args.model, args.output_dir, data_dir=args.data_dir,
                                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                          seed=args.seed, femnist_crop=args.femnist_crop,
                                          celeba_attribute=args.celeba_attribute, max_clients=args.max_clients,
                                          progress=not args.quiet)
    except (DataError, ValueError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    best = result.best
    print(f"centralized {args.dataset}/{args.model}: {result.num_train_examples:,} training examples, "
          f"test accuracy after epoch {args.epochs} {100 * result.final_accuracy:.2f}%, best "
          f"{100 * best['test_accuracy']:.2f}% (epoch {best['epoch']}); test majority class "
          f"{100 * result.test_majority:.2f}%\nwrote {os.path.abspath(args.output_dir)}/summary.json, curves.png")
    return 0
