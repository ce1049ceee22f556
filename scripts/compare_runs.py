#!/usr/bin/env python3
"""Side-by-side table of a FedAvg baseline run and a pruned run (from their summary.json).

Example:
  python scripts/compare_runs.py runs/demo/fedavg runs/demo/pruned --output runs/demo/comparison.md
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tff_prune import report  # noqa: E402


def _load(parser: argparse.ArgumentParser, run_dir: str) -> dict:
    path = os.path.join(run_dir, report.SUMMARY_FILE)
    if not os.path.isfile(path):
        parser.error(f"no {report.SUMMARY_FILE} in {run_dir}; run scripts/run_simulation.py "
                     f"--output-dir {run_dir} first")
    return report.read_json(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the comparison table and writes it as Markdown; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline_dir", help="output folder of the --no-prune run")
    p.add_argument("pruned_dir", help="output folder of the pruned run")
    p.add_argument("--output", default=None, help="Markdown file (default: comparison.md beside the two runs)")
    args = p.parse_args(argv)
    baseline, pruned = _load(p, args.baseline_dir), _load(p, args.pruned_dir)
    text = report.comparison_markdown(baseline, pruned)
    out = args.output or os.path.join(os.path.dirname(os.path.abspath(args.pruned_dir)), report.COMPARISON_FILE)
    report.atomic_write_bytes(out, text.encode())
    print(text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
