"""The paper's experiments as data (:data:`EXPERIMENTS`, :data:`RUNS`) and the in-process runner of one run.

Each experiment runs six simulations on the same seed and therefore the same sampled clients: ``fedavg``
(--no-prune), ``reinit`` (the authors' fresh weights after each prune), ``inherit`` (survivors keep their
weights), ``inherit_round8`` (inherit, then every group rounded down to a multiple of 8 channels once pruning
stops: ``--round-mode final``), ``magnitude`` (the tfmot unstructured baseline: prune_low_magnitude,
polynomial decay over the same prune window to the per-kernel sparsity that leaves as many non-zero parameters
as ``inherit`` kept; needs ``inherit`` first), and ``inherit_low`` (beyond the paper: inherit with
``--criterion band_low``, only filters below mu - k*sigma go). First, ``centralized``: no federation, the
same model trained on the pooled training clients (:func:`tff_prune.centralized.run_centralized`; a few minutes), the
reference that tells a FedAvg run short of rounds from one short of data. The authors' k, 5 local epochs, batch 32 and
client Adam 1e-3 are kept. FEMNIST: rounds, clients per round and the last prune round are scaled to fit about
an hour per experiment on 2 cores (the prune window keeps the paper's 50/500 = 10% of the rounds). CelebA:
150 rounds x 20 clients (the authors: 500 x 50), with the paper's Adam 1e-3 as ``--client-optimizer
shared_adam`` (its state held by the server and continued by every client), because TFF's per-client fresh Adam
did not federate the ``male`` label on this split (docs/RESULTS.md); ``celeba_cnn_smiling`` is LEAF's CelebA task
(``smiling``) with TFF's client Adam; ``celeba_resnet_sgd`` trains the clients with SGD instead of Adam, in 100
rounds x 20 clients.
Results go to results/<experiment>/<run>/ (``tff-prune-run``'s files: summary.json, metrics.jsonl, models,
plots) and results/<experiment>/experiment.json; ``--seed S`` (S > 0) repeats runs on other sampled clients and
initial weights in results/<experiment>/seedS/, which ``tff_prune.results_doc`` summarises across seeds. Re-running
skips finished runs and resumes interrupted ones (--resume), so the script can be stopped at any time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One row of the paper's table and our scaled settings.

    Attributes:
      dataset, model, k: the paper's. rounds, clients_per_round, max_prune_round: ours (scaled; see module doc).
      paper: the authors' numbers (final-round test accuracy, parameters and TF-profiler FLOPs).
      central_epochs: epochs of the centralized reference (the ``centralized`` run).
      client_optimizer, client_lr: the clients' optimizer (the paper's: Adam, 1e-3; ``shared_adam`` is the same
        Adam with its state carried by the server across clients, see ``tff_prune/federated/shared_adam.py``).
      eval_every: test evaluations every N rounds (the mean of the last 10 evaluations is the headline number).
      celeba_attribute: the CelebA label (the paper's ``male``; LEAF's ``smiling``).
    """

    dataset: str
    model: str
    k: float
    rounds: int
    clients_per_round: int
    max_prune_round: int
    paper: dict
    central_epochs: int = 10
    client_optimizer: str = "adam"
    client_lr: float = 1e-3
    eval_every: int = 1
    celeba_attribute: str = "male"


EXPERIMENTS = {
    # The paper's 500 rounds with its FEMNIST baseline's 10 clients per round (about 1 h per run here).
    "femnist_cnn": Experiment("femnist", "cnn", 2.2, 500, 10, 50, dict(
        rounds=500, clients_per_round="50 (baseline 10)", baseline_acc=74.78, pruned_acc=71.55,
        params=(56_126, 21_488), flops=(7_529_588, 2_860_280))),
    # The earlier 100-round protocol (window scaled to 10 rounds), kept for its results.
    "femnist_cnn_100r": Experiment("femnist", "cnn", 2.2, 100, 10, 10, dict(
        rounds=500, clients_per_round="50 (baseline 10)", baseline_acc=74.78, pruned_acc=71.55,
        params=(56_126, 21_488), flops=(7_529_588, 2_860_280))),
    # CelebA `male`: with TFF's client Adam (fresh moments per client) FedAvg predicts one class on our
    # single-class clients; the paper's Adam 1e-3 with its state carried by the server (shared_adam, the
    # authors' loop carries it from client to client) federates it (docs/RESULTS.md). 150 rounds x 20 clients
    # (CNN about 8.5 s per round here), the prune window on rounds 1..15 (10%), test evaluation every 5 rounds.
    "celeba_cnn": Experiment("celeba", "cnn", 2.0, 150, 20, 15, dict(
        rounds=500, clients_per_round=50, baseline_acc=95.87, pruned_acc=92.60,
        params=(80_930, 10_998), flops=(152_485_804, 29_582_906)), client_optimizer="shared_adam", eval_every=5),
    "celeba_resnet": Experiment("celeba", "resnet", 2.0, 150, 20, 15, dict(
        rounds=500, clients_per_round=50, baseline_acc=89.51, pruned_acc=85.83,
        params=(30_626, 6_791), flops=(5_234_332, 1_610_012)), client_optimizer="shared_adam", eval_every=5),
    "celeba_inception": Experiment("celeba", "inception", 2.4, 150, 20, 15, dict(
        rounds=500, clients_per_round=50, baseline_acc=86.81, pruned_acc=72.11,
        params=(243_752, 127_080), flops=(324_044_726, 171_728_949),
        note="k=2.5 gave 88.06%, 137,294 parameters, 199,695,684 FLOPs"), client_optimizer="shared_adam",
        eval_every=5),
    # LEAF's CelebA task (`smiling`, which varies within almost every celebrity), the paper's CNN and client Adam.
    "celeba_cnn_smiling": Experiment("celeba", "cnn", 2.0, 150, 20, 15, dict(
        note="LEAF's CelebA task (label `smiling`), not one of the paper's experiments"), eval_every=5,
        celeba_attribute="smiling"),
    # A mobile network people deploy (issue 20), not one of the paper's: Keras' MobileNetV3Small (weights=None;
    # squeeze-excitation, hard-swish as TF ops) on CelebA `male` with the paper's Adam as shared_adam, 60 rounds
    # (FedAvg: 28 min here). FedAvg predicted one class at every evaluation, so no default-mode run was made
    # (docs/RESULTS.md, "Mobile networks on CelebA").
    "celeba_mobilenetv3small": Experiment("celeba", "mobilenetv3small", 2.0, 60, 20, 6, dict(
        note="Keras' MobileNetV3Small (1,532,018 parameters for 2 classes), not one of the paper's experiments"),
        client_optimizer="shared_adam", eval_every=5),
    # The same network on LEAF's CelebA task (`smiling`, mixed within almost every client) with TFF's client
    # Adam, as celeba_cnn_smiling: `male` predicted one class at every evaluation of the 60-round FedAvg run
    # (docs/RESULTS.md). 40 rounds x 20 clients (about 25 s per round here).
    "celeba_mobilenetv3small_smiling": Experiment("celeba", "mobilenetv3small", 2.0, 40, 20, 4, dict(
        note="Keras' MobileNetV3Small on LEAF's CelebA task (label `smiling`), not one of the paper's experiments"),
        eval_every=5, celeba_attribute="smiling"),
    # The same network and task with client SGD 0.05 (as celeba_resnet_sgd): trained centrally on batches that each
    # hold one celebrity's photos, MobileNetV3Small learned with SGD 0.05 (60.5%, 71.6% after 1 and 2 epochs) and
    # not with Adam 1e-3 (BatchNorm or GroupNorm: the majority class), results/trials/celeba_batchnorm_one_celebrity
    # _batches.json. 60 rounds so that the default mode's warm-up can end and its candidates train.
    "celeba_mobilenetv3small_sgd_smiling": Experiment("celeba", "mobilenetv3small", 2.0, 60, 20, 6, dict(
        note="Keras' MobileNetV3Small on LEAF's CelebA task (label `smiling`) with client SGD 0.05, not one of the "
             "paper's experiments"), eval_every=5, celeba_attribute="smiling", client_optimizer="sgd", client_lr=0.05),
    # Not the paper's optimizer: client SGD (lr 0.05). TFF runs the authors' client Adam with fresh moments for
    # every client; on single-class clients its first steps are nearly lr * sign(g), and FedAvg predicted one
    # class for 52 rounds (celeba_resnet). Client SGD federated `male` in a 30-round trial (67.9% at round 30,
    # 50 clients). 100 rounds x 20 clients fits the six runs in about an hour; the window keeps 10%.
    "celeba_resnet_sgd": Experiment("celeba", "resnet", 2.0, 100, 20, 10, dict(
        rounds=500, clients_per_round=50, baseline_acc=89.51, pruned_acc=85.83,
        params=(30_626, 6_791), flops=(5_234_332, 1_610_012)),
        client_optimizer="sgd", client_lr=0.05),
    # The paper's 500 rounds x 10 clients (about 2 h per run on an idle 2-core machine).
    "femnist_inception": Experiment("femnist", "inception", 2.5, 500, 10, 50, dict(
        rounds=500, clients_per_round=10, baseline_acc=82.20, pruned_acc=80.74,
        params=(246_236, 84_719), flops=(31_010_894, 12_853_746))),
    # The earlier 60-round protocol (window 6), kept for its results.
    "femnist_inception_60r": Experiment("femnist", "inception", 2.5, 60, 10, 6, dict(
        rounds=500, clients_per_round=10, baseline_acc=82.20, pruned_acc=80.74,
        params=(246_236, 84_719), flops=(31_010_894, 12_853_746))),
}
RUNS = {
    "fedavg": ["--no-prune"],
    # The toolkit's default (--schedule auto): warm-up to a plateau of the federated validation accuracy,
    # then weak-tail candidates trained beside the current model, accepted within a 1-point budget.
    "default": [],
    "reinit": ["--schedule", "paper", "--weights", "reinit"],
    "inherit": ["--schedule", "paper", "--weights", "inherit"],
    # The band removes 1-3 filters of a group per round: rounding up puts them back (the 20-round trial
    # accepted no prune: a FedAvg rerun), rounding down every prune shrinks every group to 8 (measured:
    # 2,374 parameters by round 9). "final" prunes like inherit, then rounds down once when pruning stops.
    "inherit_round8": ["--schedule", "paper", "--weights", "inherit", "--round-to", "8", "--round-mode", "final"],
    "magnitude": ["--method", "magnitude"],  # + --target-sparsity from the inherit run (magnitude_sparsity)
    # Not the paper's: only the weak tail of the band goes (inherit removes the strongest filters each round).
    "inherit_low": ["--schedule", "paper", "--weights", "inherit", "--criterion", "band_low"],
}

# Runs made only when named (--runs NAME): points of the default mode's size/accuracy frontier.
EXTRA_RUNS = {
    # The default mode with a 2-point budget (femnist_cnn's default stopped at 25,304 parameters, above the
    # authors' 21,488, with 0.79 of its 1-point budget used, and lost 0.40 points against FedAvg at round 500).
    "default_loss2": ["--max-accuracy-loss", "0.02"],
}

# Not a FedAvg run: tff_prune.centralized.run_centralized, the same model trained on the pooled training clients.
CENTRALIZED = "centralized"
ALL_RUNS = (CENTRALIZED, *RUNS)  # what --runs defaults to
KNOWN_RUNS = (*ALL_RUNS, *EXTRA_RUNS)  # what --runs accepts
RUN_FLAGS = {**RUNS, **EXTRA_RUNS}  # run name -> its tff-prune-run flags beyond the experiment's


def seed_dir(results: str, name: str, seed: int) -> str:
    """Folder of one experiment's runs on one seed: results/<name>/ for seed 0, results/<name>/seed<S>/ else.

    Seed 0 is the experiment's main seed (its runs sit directly in results/<name>/); further seeds repeat the
    runs with other sampled clients and initial weights, for make_results.py's across-seeds table.
    """
    return os.path.join(results, name) if seed == 0 else os.path.join(results, name, f"seed{seed}")


def magnitude_sparsity(exp: Experiment, results: str, name: str, seed: int = 0) -> float:
    """tfmot per-kernel sparsity giving the magnitude baseline as many non-zero parameters as ``inherit`` kept.

    Raises:
      RuntimeError: the experiment's inherit run (on this seed) has not finished.
    """
    path = os.path.join(seed_dir(results, name, seed), "inherit", "summary.json")
    if not os.path.isfile(path):
        raise RuntimeError(f"{name}/magnitude (seed {seed}) needs the inherit run's final size; "
                           f"run --runs inherit first")
    from tff_prune.tf_logging import import_tensorflow

    import_tensorflow()  # before tff_prune.models imports it: no CUDA-registration noise on the console
    from tff_prune.federated.magnitude import sparsity_for_params
    from tff_prune.models import get_model
    from tff_prune.report import read_json

    return sparsity_for_params(get_model(exp.model, exp.dataset, seed=0), read_json(path)["final_params"])


def prune_window(exp: Experiment, rounds: Optional[int]) -> int:
    """Last prunable round: the experiment's, scaled with a --rounds override (the paper's 10% of the rounds)."""
    if rounds is None:
        return exp.max_prune_round
    return max(1, round(exp.max_prune_round * rounds / exp.rounds))


def run_args(exp: Experiment, run: str, out: str, seed: int, rounds: Optional[int],
             target_sparsity: Optional[float] = None) -> list[str]:
    """run_simulation.py flags of one run (``target_sparsity``: the magnitude run's, see magnitude_sparsity).

    Raises:
      ValueError: the magnitude run without ``target_sparsity``.
    """
    if run == "magnitude" and target_sparsity is None:
        raise ValueError("the magnitude run needs target_sparsity (see magnitude_sparsity)")
    variants = "float32,int8" + (",sparse" if run == "magnitude" else "")
    return ["--dataset", exp.dataset, "--model", exp.model, "--k", str(exp.k),
            "--rounds", str(rounds or exp.rounds), "--clients-per-round", str(exp.clients_per_round),
            "--max-prune-round", str(prune_window(exp, rounds)), "--local-epochs", "5", "--batch-size", "32",
            "--client-optimizer", exp.client_optimizer, "--client-lr", f"{exp.client_lr:g}", "--seed", str(seed),
            "--eval-every", str(exp.eval_every),
            *(["--celeba-attribute", exp.celeba_attribute] if exp.dataset == "celeba" else []),
            "--tflite-variants", variants, "--output-dir", out, "--quiet", *RUN_FLAGS[run]] + (
                ["--target-sparsity", f"{target_sparsity:.6f}"] if run == "magnitude" else [])


def centralized_kwargs(exp: Experiment, seed: int) -> dict:
    """``tff_prune.centralized.run_centralized`` arguments of the experiment's centralized reference: the same
    model, seed and label, the clients' batch (32) and optimizer (Adam 1e-3), ``exp.central_epochs`` epochs."""
    return dict(epochs=exp.central_epochs, batch_size=32, lr=1e-3, seed=seed, celeba_attribute=exp.celeba_attribute)


def run_one(exp: Experiment, name: str, run: str, results: str, seed: int, rounds: Optional[int],
            data_dir: Optional[str]) -> str:
    """Runs (or resumes, or skips) one run of :data:`KNOWN_RUNS` in this process.

    Its output (log lines, TF's and TFF's C++ messages) goes to ``<run folder>/run.log`` (appended), never a
    pipe: TFF's worker processes could hold a pipe open.

    Returns:
      'done', or 'skipped' when its summary.json exists.

    Raises:
      RuntimeError: the run failed (the message names run.log; re-running resumes it), or the magnitude run's
        inherit run has not finished.
    """
    out = os.path.join(seed_dir(results, name, seed), run)
    if os.path.isfile(os.path.join(out, "summary.json")):
        return "skipped"
    sparsity = magnitude_sparsity(exp, results, name, seed) if run == "magnitude" else None
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "run.log")
    t0 = time.time()
    with _output_to(log):
        try:
            if run == CENTRALIZED:  # minutes; restarted from scratch if interrupted
                _run_centralized(exp, out, seed, data_dir)
            else:
                args = run_args(exp, run, out, seed, rounds, sparsity)
                args += ["--resume"] if os.path.isfile(os.path.join(out, "checkpoint.npz")) else ["--overwrite"]
                _simulate(args + (["--data-dir", data_dir] if data_dir else []))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is logged in full and named to the caller
            import traceback

            traceback.print_exc()
            raise RuntimeError(f"{name}/{run} failed ({type(e).__name__}: {e}); see {log}. "
                               f"Re-run this command to resume it.") from e
    print(f"  {name}/{run}: {time.time() - t0:.0f} s", flush=True)
    return "done"


def _simulate(argv: list[str]) -> dict:
    """``tff-prune-run``'s flags parsed as it parses them, then :func:`tff_prune.simulation.simulate`."""
    import argparse

    from tff_prune.tf_logging import import_tensorflow

    import_tensorflow()  # without TF 2.14's CUDA-registration noise in run.log
    from mobile.convert import parse_variants
    from tff_prune.flags import add_run_flags, config_from_args
    from tff_prune.simulation import simulate

    parser = argparse.ArgumentParser(prog="tff-prune-run")
    add_run_flags(parser)
    args = parser.parse_args(argv)
    return simulate(config_from_args(args), variants=parse_variants(args.tflite_variants), resume=args.resume,
                    overwrite=args.overwrite, progress=not args.quiet)


def _run_centralized(exp: Experiment, out: str, seed: int, data_dir: Optional[str]) -> dict:
    from tff_prune.centralized import run_centralized
    from tff_prune.tf_logging import import_tensorflow

    import_tensorflow()
    summary, _ = run_centralized(exp.dataset, exp.model, out, data_dir=data_dir, progress=False,
                                 **centralized_kwargs(exp, seed))
    return summary


@contextlib.contextmanager
def _output_to(path: str):
    """Appends this process's output to ``path``: file descriptors 1 and 2 (C++ output: TF, TFF's runtime) and
    ``sys.stdout`` / ``sys.stderr`` (Python's, also where a caller had replaced them); all restored after."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
