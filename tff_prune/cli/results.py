"""Generate docs/RESULTS.md (and its plots) from results/*/ written by tff-prune-reproduce.

Example:
  tff-prune-results --results results --output docs/RESULTS.md      # or: python scripts/make_results.py

The rendering is ``tff_prune.results_doc``; docs/results_discussion.md, beside the output, is appended verbatim.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry; returns 0, or 2 when there are no results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="folder of the runs (default %(default)s)")
    p.add_argument("--output", default=os.path.join("docs", "RESULTS.md"), help="default %(default)s")
    args = p.parse_args(argv)
    if not os.path.isdir(args.results):
        p.error(f"--results: {args.results} does not exist; run tff-prune-reproduce first")
    from tff_prune.results_doc import render

    render(args.results, args.output)
    print("written", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
