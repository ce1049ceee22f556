"""Reproduce the paper's experiments: FedAvg vs automatic pruning (reinit, inherit, inherit + round-to 8, ...).

Example:
  tff-prune-reproduce --experiment femnist_cnn            # or: python scripts/reproduce.py ...
  tff-prune-reproduce --experiment celeba_cnn --runs fedavg,default
  tff-prune-results                                       # docs/RESULTS.md from results/*/

The experiments and their runs are defined in tff_prune/experiments.py (the same seed, hence the same sampled
clients, for every run of an experiment). Each run goes to results/<experiment>/<run>/ with its log in run.log;
re-running skips finished runs and resumes interrupted ones, so this command can be stopped at any time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Optional, Sequence

from tff_prune.experiments import (ALL_RUNS, EXPERIMENTS, EXTRA_RUNS, KNOWN_RUNS, RUN_FLAGS, prune_window,
                                   run_one, seed_dir)
from tff_prune.report import write_json


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the requested experiments; returns 0, or 2 on bad flags / a failed run."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, help=f"one of {', '.join(EXPERIMENTS)}, or all")
    p.add_argument("--runs", default=",".join(ALL_RUNS), help="comma list of runs (default: all of %(default)s; "
                   f"only when named: {', '.join(EXTRA_RUNS)})")
    p.add_argument("--rounds", type=int, default=None, help="override the experiment's rounds (shorter trials)")
    p.add_argument("--seed", type=int, default=0,
                   help="0: the experiment's main runs (results/NAME/); S > 0: a repeat in results/NAME/seedS/")
    p.add_argument("--results", default="results", help="results folder (default %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the packed data (default ../shared/data)")
    args = p.parse_args(argv)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    if any(n not in EXPERIMENTS for n in names):
        p.error(f"--experiment: unknown {args.experiment!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    runs = args.runs.split(",")
    if any(r not in KNOWN_RUNS for r in runs):
        p.error(f"--runs: unknown {', '.join(r for r in runs if r not in KNOWN_RUNS)}; "
                f"choose from {', '.join(KNOWN_RUNS)}")
    if args.rounds is not None and args.rounds < 2:
        p.error("--rounds: must be >= 2")
    if args.seed < 0:
        p.error(f"--seed: must be >= 0, got {args.seed}")
    import logging

    from tqdm import tqdm

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # into run.log
    for name in names:
        exp = EXPERIMENTS[name]
        write_json(os.path.join(seed_dir(args.results, name, args.seed), "experiment.json"),
                   {"name": name, **dataclasses.asdict(exp), "planned_rounds": exp.rounds,
                    "rounds": args.rounds or exp.rounds,
                    "max_prune_round": prune_window(exp, args.rounds),
                    "seed": args.seed, "runs": RUN_FLAGS})
        for run in tqdm(runs, desc=name, unit="run"):
            try:
                run_one(exp, name, run, args.results, args.seed, args.rounds, args.data_dir)
            except RuntimeError as e:
                print(f"{p.prog}: error: {e}", file=sys.stderr)
                return 2
    print("results in", args.results, "- now: tff-prune-results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
