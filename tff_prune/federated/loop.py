"""The federated round loop: FedAvg rounds, with server steps around them.

Per round ``r = 1..R``:

1. every server step's ``before_round`` (``steps/``): the pruning step decides on the aggregate of round
   ``r - 1`` and may change the architecture; a changed architecture gets a new LearningProcess
   (``build_weighted_fed_avg``; TFF processes have fixed shapes) holding the weights (``set_model_weights``);
2. ``clients_per_round`` clients are sampled (a pure function of ``(seed, r)``) and ``process.next`` runs
   FedAvg on their ``tf.data`` pipelines, locally or on ``--workers`` (``runtime.py``);
3. the aggregate goes into the global Keras model and every step's ``after_aggregation`` runs (masks,
   federated validation, a trial's second model);
4. the global model is evaluated on the central test set (every ``eval_every`` rounds and at round R; this
   number is reported, never used by a step);
5. every step's ``round_done`` sees the complete record (the divergence guard raises here), then the record is
   appended to ``metrics.jsonl`` and the checkpoint (weights, architecture, every step's state, byte
   counters) is written atomically.

The whole run holds an exclusive lock on the output folder (``rundir.claim``).

This module knows no step by name: which steps run is ``steps.build_steps``'s business.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Optional

import tensorflow as tf
from tqdm.auto import tqdm

from tff_prune import accounting, report
from tff_prune import data as datasets
from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.data import FederatedData
from tff_prune.federated import checkpoint, magnitude, rundir
from tff_prune.federated.checkpoint import CheckpointError
from tff_prune.federated.process import assign_model_weights, server_optimizer_state, with_server_optimizer_state
from tff_prune.federated.shared_adam import (carry_client_optimizer_state, client_optimizer_state,
                                             with_client_optimizer_state)
from tff_prune.federated.runtime import Runtime
from tff_prune.federated.sampling import derive_seed, sample_clients
from tff_prune.federated.steps import RoundInfo, RunState, ServerStep, build_steps, no_prune_decision
from tff_prune.federated.steps.base import architecture_builder, compile_for_eval
from tff_prune.federated.variables import tff_variable_split
from tff_prune.models import get_model

log = logging.getLogger(__name__)
__all__ = ["RunResult", "derive_seed", "load_data", "restore_state", "run", "sample_clients"]


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`run`.

    Attributes:
      model: final global Keras model (compiled for evaluation; a QAT model after QAT rounds;
        after ``--method magnitude`` the stripped model with zeros in its kernels).
      float_architecture: a float model of the final architecture (the QAT model's
        unwrapped form; weights not meaningful after QAT — see ``qat.strip_quantization``).
      records: one dict per finished round (the lines of ``metrics.jsonl``).
      initial: ``accounting.summarize`` of the initial model; final: of the final model.
      stop_reason: why pruning stopped ('' if it never stopped or was disabled).
    """

    model: tf.keras.Model
    float_architecture: tf.keras.Model
    records: list[dict]
    initial: dict
    final: dict
    stop_reason: str


def load_data(config: ExperimentConfig) -> FederatedData:
    """The run's client data (``config.dataset``) through TFF's loader from the offline cache."""
    return datasets.load(config.dataset, config.data_dir, max_clients=config.max_clients,
                         femnist_crop=config.femnist_crop, celeba_attribute=config.celeba_attribute)


def _train_metrics(metrics) -> dict:
    train = metrics["client_work"]["train"]
    return {"train_loss": float(train["loss"]), "train_accuracy": float(train["sparse_categorical_accuracy"]),
            "num_examples": int(train["num_examples"])}


def _open(config: ExperimentConfig, resume: bool, overwrite: bool) -> Optional[checkpoint.Checkpoint]:
    """Checks the output folder and the resume flags before any work; returns the checkpoint to resume.

    With ``resume`` and a checkpoint of round ``config.rounds`` whose export did not finish (no
    ``summary.json`` of that round), the checkpoint is returned: the run trains no round and is exported.
    """
    out, metrics_path = config.output_dir, os.path.join(config.output_dir, report.METRICS_FILE)
    if resume and overwrite:
        raise ConfigError("--overwrite: cannot be combined with --resume; --resume continues the run in "
                          "--output-dir, --overwrite discards it")
    if not resume:
        if not overwrite and rundir.holds_run(out):
            raise ConfigError(f"--output-dir: {out} already holds a run; pass --resume to continue it, "
                              f"--overwrite to start again there, or choose another --output-dir")
        return None
    done = [r["round"] for r in report.read_metrics(metrics_path)]
    if not checkpoint.exists(out) and done:
        raise CheckpointError(f"--resume: no checkpoint at {checkpoint.checkpoint_path(out)}, but {metrics_path} "
                              f"records rounds {done[0]}..{done[-1]}; the run cannot continue without it. Start "
                              f"again with --overwrite (the recorded rounds are discarded)")
    ckpt = checkpoint.load(out)
    mismatches = config.resume_mismatches(ExperimentConfig.from_dict(
        {**ckpt.config, "output_dir": config.output_dir, "data_dir": config.data_dir}))
    if mismatches:
        raise ConfigError("--resume: flags differ from the checkpointed run: " + "; ".join(mismatches)
                          + ". Resume with the original flags (only --rounds may grow).")
    if [r for r in done if r <= ckpt.round] != list(range(1, ckpt.round + 1)):
        raise CheckpointError(
            f"--resume: {metrics_path} records rounds {_spans(done) or 'none'} but the checkpoint finished round "
            f"{ckpt.round}; the checkpoint keeps only the last round's state, so the missing records cannot be "
            f"rebuilt. Restore {report.METRICS_FILE} from a copy, or start again with --overwrite")
    summary_path = os.path.join(out, report.SUMMARY_FILE)
    exported = os.path.isfile(summary_path) and _summary_round(summary_path) == ckpt.round
    if ckpt.round > config.rounds or (ckpt.round == config.rounds and exported):
        raise ConfigError(f"--rounds: the run already finished round {ckpt.round}"
                          + (" and its export (summary.json)" if exported else "")
                          + f"; pass --rounds > {ckpt.round} to continue training"
                          + ("" if exported else f", or --rounds {ckpt.round} to finish its export"))
    return ckpt


def _summary_round(path: str) -> Optional[int]:
    try:
        return int(report.read_json(path)["rounds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _spans(rounds: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1..3, 5"``."""
    spans: list[list[int]] = []
    for r in rounds:
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    return ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in spans)


def _restore(config: ExperimentConfig, steps: list[ServerStep], ckpt: checkpoint.Checkpoint) -> RunState:
    """The run state after the checkpointed round: architecture, (wrapped) model with its weights, counters."""
    arch_json = ckpt.float_model_json or ckpt.model_json
    architecture = tf.keras.models.model_from_json(arch_json)
    model = architecture
    for step in steps:
        state = ckpt.steps.get(step.name)
        if state is not None:
            step.load_state_dict(state, ckpt.step_arrays.get(step.name, []))
        model = step.restore_model(tf.keras.models.model_from_json(arch_json), config) or model
    model.set_weights(ckpt.weights)
    return RunState(model=compile_for_eval(model), architecture=architecture,
                    builder=architecture_builder(architecture), counters=dict(ckpt.counters))


def restore_state(ckpt: checkpoint.Checkpoint) -> RunState:
    """The run state a checkpoint holds (model rebuilt by the run's steps, e.g. under tfmot wrappers)."""
    config = ExperimentConfig.from_dict(ckpt.config)
    return _restore(config, build_steps(config), ckpt)


def run(config: ExperimentConfig, data: Optional[FederatedData] = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True) -> RunResult:
    """Runs a federated simulation: FedAvg rounds with the configuration's server steps.

    Args:
      config: the experiment (validated on construction).
      data: preloaded data (tests reuse it); default loads ``config.dataset`` from ``config.data_dir``.
      resume: continue from ``<output_dir>/checkpoint.npz`` at the next round.
      overwrite: allow starting afresh in an output folder that holds an earlier run.
      progress: show a tqdm bar over rounds.

    Returns:
      :class:`RunResult`; ``metrics.jsonl`` and ``checkpoint.npz`` are in ``config.output_dir``.

    Raises:
      ConfigError: bad flag combination (too many clients per round, a resume whose
        flags differ from the checkpoint, an output folder holding another run or unusable).
      DataError: data missing or corrupt. CheckpointError: ``--resume`` without a valid checkpoint, or with a
        ``metrics.jsonl`` that lacks rounds the checkpoint finished.
      OutputDirBusy: another process holds the output folder (``rundir.claim``).
      DivergenceError: a round's aggregate or loss is NaN/inf (``steps.finite``); the checkpoint keeps the
        last finite round.
    """
    with rundir.claim(config.output_dir):
        return _run(config, data, resume, overwrite, progress)


def _run(config: ExperimentConfig, data: Optional[FederatedData], resume: bool, overwrite: bool,
         progress: bool) -> RunResult:
    out, metrics_path = config.output_dir, os.path.join(config.output_dir, report.METRICS_FILE)
    ckpt = _open(config, resume, overwrite)
    data = data if data is not None else load_data(config)
    config.check_num_clients(len(data.client_ids))
    if overwrite and not resume:
        removed = rundir.clear_run_files(out)
        if removed:
            log.info("--overwrite: removed %d files of the earlier run in %s", len(removed), out)
    rt, steps = Runtime(config, data), build_steps(config)
    pruner = next((s for s in steps if s.prunes), None)
    initial_model = get_model(config.model, config.dataset, seed=config.seed)
    initial = dict(accounting.summarize(initial_model))
    if ckpt is None:
        run_state, records, start = RunState(initial_model, initial_model, architecture_builder(initial_model)), [], 1
        if os.path.exists(metrics_path):  # no finished round in it (else _open refused): not a run
            os.remove(metrics_path)
    else:
        run_state, start = _restore(config, steps, ckpt), ckpt.round + 1
        records = [r for r in report.read_metrics(metrics_path) if r["round"] <= ckpt.round]
        report.write_metrics(metrics_path, records)
        if start > config.rounds:
            log.info("--resume: round %d was the last; finishing the export", ckpt.round)
    if start <= config.rounds and os.path.exists(os.path.join(out, report.SUMMARY_FILE)):
        os.remove(os.path.join(out, report.SUMMARY_FILE))  # it describes an export of an earlier round
    for step in steps:
        step.start(run_state, rt, resumed=ckpt is not None)
    if start <= config.rounds:
        run_state.process, run_state.state = rt.new_process(run_state.builder, run_state.model,
                                                            f"round {start} (new process)")
        if ckpt is not None and ckpt.server_optimizer:  # FedAdam / FedYogi moments continue where they were
            run_state.state = with_server_optimizer_state(run_state.state, ckpt.server_optimizer)
        if ckpt is not None and ckpt.client_optimizer:  # the clients' shared Adam state continues too
            run_state.state = with_client_optimizer_state(run_state.state, ckpt.client_optimizer)
    compile_for_eval(run_state.model)
    test_x, test_y = data.test_arrays()
    prev_stopped = None
    bar = tqdm(range(start, config.rounds + 1), desc="rounds", unit="round", disable=not progress,
               initial=start - 1, total=config.rounds)
    for r in bar:
        t0 = time.perf_counter()
        rs = run_state
        decisions = [d for d in (step.before_round(rs, rt, r) for step in steps) if d is not None]
        decision = decisions[0] if decisions else no_prune_decision(r, rs)
        if rs.rebuild:
            old_state = rs.state
            rs.process, rs.state = rt.new_process(rs.builder, rs.model, f"round {r} (new process)")
            if rs.carry is not None:  # pruned with inherited weights: shared optimizer moments follow the channels
                rs.state = carry_client_optimizer_state(old_state, rs.carry[0], rs.state, rs.carry[1]) or rs.state
            rs.rebuild, rs.carry = False, None
        if decision.action != "skipped" or decision.stopped != prev_stopped:
            log.info("round %d: prune %s (%s); widths %s", r, decision.action, decision.reason, decision.widths_after)
        prev_stopped = decision.stopped
        summary = accounting.summarize(rs.architecture)

        clients = sample_clients(data.client_ids, config.clients_per_round, config.seed, r)
        seeds = [derive_seed(config.seed, r, data.client_ids.index(cid)) for cid in clients]
        info = RoundInfo(round=r, clients=clients, seeds=seeds, round_data=rt.round_data(clients, seeds))
        result = rt.call(lambda: rs.process.next(rs.state, info.round_data), f"round {r}")
        rs.state = result.state
        assign_model_weights(rt.call(lambda: rs.process.get_model_weights(rs.state), f"round {r}"), rs.model)
        record = {"round": r, **_train_metrics(result.metrics), "qat": False}
        rs.extra_bytes_down = rs.extra_bytes_up = 0
        for step in steps:
            step.after_aggregation(rs, rt, info, record)
        record["nonzero_params"] = magnitude.count_nonzero_params(rs.model)
        evaluated = r % config.eval_every == 0 or r == config.rounds
        loss, acc = rs.model.evaluate(test_x, test_y, batch_size=1024, verbose=0) if evaluated else (None, None)
        record.update(eval_loss=None if loss is None else float(loss), eval_accuracy=None if acc is None else float(acc))

        uploaded = sum(int(v.shape.num_elements()) for v in tff_variable_split(rs.model)[0])
        sent = accounting.round_bytes(rs.model, len(clients), uploaded_params=uploaded)
        sent = {"bytes_down": sent["bytes_down"] + rs.extra_bytes_down, "bytes_up": sent["bytes_up"] + rs.extra_bytes_up}
        rs.counters["bytes_down"] += sent["bytes_down"]
        rs.counters["bytes_up"] += sent["bytes_up"]
        record.update(params=summary["params"], flops=summary["flops"], widths=summary["widths"],
                      bytes_down=sent["bytes_down"], bytes_up=sent["bytes_up"],
                      cumulative_bytes_down=rs.counters["bytes_down"], cumulative_bytes_up=rs.counters["bytes_up"],
                      cumulative_bytes=rs.counters["bytes_down"] + rs.counters["bytes_up"], clients=clients,
                      prune=decision.to_dict(), wall_seconds=time.perf_counter() - t0)
        for step in steps:
            step.round_done(rs, rt, info, record)
        report.append_metrics(metrics_path, record)
        _save(config, rs, steps, r)
        records.append(record)
        bar.set_postfix(params=record["params"], acc="-" if acc is None else f"{acc:.3f}", prune=decision.action)
    bar.close()
    for step in steps:
        step.finish(run_state, rt)
    return RunResult(model=run_state.model, float_architecture=run_state.architecture, records=records,
                     initial=initial, final=dict(accounting.summarize(run_state.architecture)),
                     stop_reason=pruner.stop_reason if pruner is not None else "")


def _save(config: ExperimentConfig, rs: RunState, steps: list[ServerStep], r: int) -> None:
    states, arrays = {}, {}
    for step in steps:
        states[step.name], arrays[step.name] = step.state_dict()
    checkpoint.save(config.output_dir, checkpoint.Checkpoint(
        round=r, config=config.to_dict(), model_json=rs.model.to_json(), weights=rs.model.get_weights(),
        steps=states, step_arrays=arrays, counters=rs.counters, server_optimizer=server_optimizer_state(rs.state),
        client_optimizer=client_optimizer_state(rs.state),
        float_model_json=rs.architecture.to_json() if rs.model is not rs.architecture else None))
