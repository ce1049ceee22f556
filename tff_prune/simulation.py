"""One whole simulation in this process: claim the run folder, train (``federated.loop.run``), export.

What ``tff-prune-run`` does after parsing its flags, as a library call (``tff_prune.experiments`` runs the
paper's experiments through it, in-process). The command line maps the exceptions below to its exit codes
(``tff_prune.cli.run.EXIT_CODES``).
"""

from __future__ import annotations

import logging
from typing import Sequence

from tff_prune.config import ExperimentConfig


def simulate(config: ExperimentConfig, *, variants: Sequence[str] = ("float32",), resume: bool = False,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Runs ``config`` into ``config.output_dir`` and exports the final model; returns the summary dict.

    The folder is claimed for this process while it runs (``federated.rundir``: one writer per run folder),
    TFF's local ``worker_binary`` is stopped on every way out (also after a SIGKILL of this process, through
    ``federated.reaper``), and tqdm progress bars share the terminal with the ``tff_prune`` INFO log.

    Args:
      config: the run's settings (validated by ``ExperimentConfig``).
      variants: TFLite variants to export (``mobile.convert.parse_variants`` names); float32 always is.
      resume: continue from ``checkpoint.npz`` in the folder; overwrite: replace a finished or partial run.
      progress: show the round progress bar.

    Returns:
      the ``summary.json`` dict (``mobile.run_export.export_and_summarize``).

    Raises:
      ConfigError: the folder cannot be created or written, or the settings contradict a checkpoint.
      rundir.OutputDirBusy: another process writes this folder (its PID is named).
      DataError: the data folder is missing or incomplete. CheckpointError: ``resume`` refused.
      DivergenceError: a round's aggregate or loss is not finite (the checkpoint keeps the last finite round).
      WorkerError: a ``--workers`` worker is unreachable, died or froze.
      KeyboardInterrupt: Ctrl-C (continue with ``resume=True``).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from mobile.run_export import export_and_summarize
    from tff_prune.federated import loop, reaper, rundir
    from tff_prune.federated.process import stop_worker_processes

    rundir.check_output_dir(config.output_dir)
    logging.getLogger("tff_prune").setLevel(logging.INFO)
    with rundir.claim(config.output_dir):
        reaper.start()
        try:
            data = loop.load_data(config)
            with logging_redirect_tqdm():
                result = loop.run(config, data=data, resume=resume, overwrite=overwrite, progress=progress)
            test_x, test_y = data.test_arrays()
            return export_and_summarize(config, result, test_x, variants, test_y)
        finally:
            stop_worker_processes()
