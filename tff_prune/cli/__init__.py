"""Command-line entry points of the federated side (``pyproject.toml``'s console scripts, ``scripts/*.py``).

Each module owns one tool's flags and exit codes and calls the library: ``run`` (``tff-prune-run``: one
simulation), ``worker`` (a TFF worker for ``--workers``), ``compare`` (two runs side by side), ``centralized``
(the pooled-data reference), ``reproduce`` (the paper's experiments, :mod:`tff_prune.experiments`) and
``results`` (docs/RESULTS.md, :mod:`tff_prune.results_doc`). Every ``main(argv=None)`` returns the process exit
code. ``run`` exports through :mod:`mobile`, the one place the federated side depends on the mobile package.
"""
