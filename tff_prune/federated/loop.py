"""The federated round loop with server-side automatic pruning.

Per round ``r = 1..R``:

0. at the start of round ``r >= 2``, if pruning is active and ``r - 1 <= max_prune_round``,
   the server applies the band criterion to the global model (the FedAvg aggregate of
   round ``r - 1``), builds the smaller model (``inherit`` or ``reinit``) and the
   controller accepts it iff the parameter count strictly drops; an accepted prune gets
   a new LearningProcess whose state receives the weights with ``set_model_weights``;
1. sample ``clients_per_round`` clients (a pure function of ``(seed, r)``);
2. ``process.next`` runs FedAvg on their ``tf.data`` pipelines (TFF's local C++ runtime), or,
   with ``--workers``, on remote ``worker_binary`` processes that build the clients' datasets
   from client keys themselves (``distributed.py``), under ``--round-timeout``;
3. the aggregated global weights are evaluated on the central test set
   (every ``eval_every`` rounds and at round R);
4. with ``--qat-rounds N``, at the start of round ``R - N + 1`` pruning ends and the
   model becomes ``tfmot`` quantization-aware (``qat.py``) for its last N rounds;
5. with ``--method magnitude`` (the tfmot unstructured baseline, ``magnitude.py``) no filter is
   removed: after each aggregation the server updates the magnitude masks of every kernel
   and clients train under them; the final model is stripped of the wrappers;
6. the round's record is appended to ``metrics.jsonl`` and the checkpoint is
   written atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tff_prune import accounting, pruning, report
from tff_prune import data as datasets
from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.data import FederatedData
from tff_prune.federated import checkpoint, distributed, magnitude
from tff_prune.federated.process import assign_model_weights, build_fed_avg, keras_to_model_weights
from tff_prune.federated.qat import is_qat_model, quantize
from tff_prune.federated.variables import tff_variable_split
from tff_prune.models import get_model
from tff_prune.pruning import ControllerState, PruningController, prune_model

log = logging.getLogger(__name__)


def derive_seed(*parts: int) -> int:
    """A 31-bit seed determined by ``parts`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2 ** 31 - 1))


def sample_clients(client_ids: list[str], clients_per_round: int, seed: int, round_num: int) -> list[str]:
    """Clients of round ``round_num``: uniform without replacement, seeded by ``(seed, round_num)``.

    The same arguments always give the same clients, so a resumed run samples
    exactly what an uninterrupted run would.
    """
    rng = np.random.default_rng([int(seed), int(round_num)])
    idx = rng.choice(len(client_ids), size=clients_per_round, replace=False)
    return [client_ids[i] for i in idx]


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


def make_plan(model: tf.keras.Model, config: ExperimentConfig) -> pruning.PruningPlan:
    """The server's pruning proposal for the global ``model`` under the run's criterion."""
    if config.criterion == "ratio":
        criterion = pruning.ratio(config.prune_ratio)
    else:
        criterion = pruning.band(config.k) if config.criterion == "band" else pruning.band_low(config.k)
    if config.round_mode == "final":  # rounding waits until pruning stops (final_rounding_plan)
        return pruning.plan(model, criterion, min_channels=config.min_channels)
    return pruning.plan(model, criterion, min_channels=config.min_channels, round_to=config.round_to,
                        round_mode=config.round_mode)


def final_rounding_plan(model: tf.keras.Model, config: ExperimentConfig) -> pruning.PruningPlan:
    """``--round-mode final``: every group rounded down to a multiple of ``round_to`` (its weakest channels go)."""
    return pruning.plan(model, pruning.ratio(0.0), min_channels=config.min_channels, round_to=config.round_to,
                        round_mode="down")


def _compile(model: tf.keras.Model) -> tf.keras.Model:
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def _builder(model: tf.keras.Model, qat: bool = False) -> Callable[[], tf.keras.Model]:
    config, cls = model.get_config(), model.__class__
    if qat:
        return lambda: quantize(cls.from_config(config))
    return lambda: cls.from_config(config)


def _train_metrics(metrics) -> dict:
    train = metrics["client_work"]["train"]
    return {"train_loss": float(train["loss"]), "train_accuracy": float(train["sparse_categorical_accuracy"]),
            "num_examples": int(train["num_examples"])}


def run(config: ExperimentConfig, data: Optional[FederatedData] = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True) -> RunResult:
    """Runs a federated simulation (pruned, or plain FedAvg with ``config.prune=False``).

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
        flags differ from the checkpoint, an output folder holding another run).
      DataError: data missing or corrupt. CheckpointError: ``--resume`` without a valid checkpoint.
    """
    out = config.output_dir
    metrics_path = os.path.join(out, report.METRICS_FILE)
    if not resume and not overwrite and (checkpoint.exists(out) or os.path.exists(metrics_path)):
        raise ConfigError(f"--output-dir: {out} already holds a run; pass --resume to continue it, "
                          f"--overwrite to start again there, or choose another --output-dir")
    ckpt = checkpoint.load(out) if resume else None
    if ckpt is not None:
        mismatches = config.resume_mismatches(ExperimentConfig.from_dict(
            {**ckpt.config, "output_dir": config.output_dir, "data_dir": config.data_dir}))
        if mismatches:
            raise ConfigError("--resume: flags differ from the checkpointed run: " + "; ".join(mismatches)
                              + ". Resume with the original flags (only --rounds may grow).")
        if ckpt.round >= config.rounds:
            raise ConfigError(f"--rounds: the checkpoint already finished round {ckpt.round}; "
                              f"pass --rounds > {ckpt.round} to continue training")

    if data is None:
        data = load_data(config)
    config.check_num_clients(len(data.client_ids))
    os.makedirs(out, exist_ok=True)

    initial_model = get_model(config.model, config.dataset, seed=config.seed)
    initial = dict(accounting.summarize(initial_model))
    by_magnitude = config.prune and config.method == "magnitude"
    structured = config.prune and not by_magnitude
    if ckpt is not None:
        model = ckpt.build_model()
        float_arch = ckpt.build_float_architecture() or model
        controller = PruningController(config.max_prune_round, config.patience,
                                       ControllerState.from_dict(ckpt.controller))
        counters = dict(ckpt.counters)
        records = [r for r in report.read_metrics(metrics_path) if r["round"] <= ckpt.round]
        report.write_metrics(metrics_path, records)
        start = ckpt.round + 1
    else:
        model = float_arch = initial_model
        if by_magnitude:
            model = magnitude.wrap(initial_model, config.target_sparsity, config.max_prune_round)
        controller = PruningController(config.max_prune_round, config.patience)
        counters = {"bytes_down": 0, "bytes_up": 0}
        records = []
        report.write_metrics(metrics_path, [])
        start = 1

    test_x, test_y = data.test_arrays()
    element_spec = data.client_dataset(data.client_ids[0], 1, config.batch_size, 0).element_spec
    cluster = distributed.default_cluster(config.workers, config.round_timeout)
    client_data_fn = None if cluster is None else distributed.dataset_computation(
        data.train, data.preprocess_fn, config.local_epochs, config.batch_size)

    sizes_cache: dict = {}

    def client_sizes(cid):
        if cid not in sizes_cache:
            sizes_cache[cid] = data.num_examples(cid)
        return sizes_cache[cid]

    def call(fn, what):
        return fn() if cluster is None else cluster.call(fn, what)

    def new_process(builder, r):
        """A LearningProcess for the architecture, holding the current global weights."""
        p = build_fed_avg(builder, element_spec, config.client_lr, config.server_lr, config.client_optimizer)
        if cluster is not None:
            p = distributed.compose(p, client_data_fn)
        weights = keras_to_model_weights(model)
        return p, call(lambda: p.set_model_weights(p.initialize(), weights), f"round {r} (new process)")

    process, state = new_process(
        magnitude.builder(float_arch, config.target_sparsity, config.max_prune_round) if by_magnitude
        else _builder(float_arch, qat=is_qat_model(model)), start)
    _compile(model)
    qat_start = config.rounds - config.qat_rounds + 1 if config.qat_rounds else None

    prev_stopped = controller.state.stopped
    bar = tqdm(range(start, config.rounds + 1), desc="rounds", unit="round", disable=not progress,
               initial=start - 1, total=config.rounds)
    for r in bar:
        t0 = time.perf_counter()
        summary = accounting.summarize(float_arch)
        in_qat = (qat_start is not None and r >= qat_start) or is_qat_model(model)
        plan = decide = None
        if structured and not in_qat and controller.should_propose(r):
            plan, decide = make_plan(model, config), controller.decide
        elif (structured and not in_qat and config.round_mode == "final" and config.round_to > 1
              and controller.state.stopped and not controller.state.rounded):
            plan = final_rounding_plan(model, config)
            decide = functools.partial(controller.final_rounding, round_to=config.round_to)
        if plan is not None:
            proposal = prune_model(model, plan, weights=config.weights,
                                   seed=derive_seed(config.seed, r, 1) if config.weights == "reinit" else None)
            decision = decide(r, summary["params"], accounting.count_params(proposal),
                              summary["widths"], accounting.conv_widths(proposal))
            if decision.action == "accepted":
                model = float_arch = _compile(proposal)
                summary = accounting.summarize(model)
                process, state = new_process(_builder(model), r)
        else:
            reason = None
            if not config.prune:
                reason = "pruning disabled (--no-prune)"
            elif by_magnitude:
                reason = "--method magnitude: the server sets magnitude masks after each aggregation"
            elif in_qat:
                reason = f"quantization-aware training (last {config.qat_rounds} rounds): the architecture is fixed"
                if not controller.state.stopped:
                    controller.state.stopped, controller.state.stop_reason = True, reason
            elif r == 1:
                reason = "round 1 trains the initial model; pruning starts after the first aggregation"
            decision = controller.skipped(r, summary["params"], summary["widths"], reason)
        if in_qat and not is_qat_model(model):
            model = _compile(quantize(model))
            process, state = new_process(_builder(float_arch, qat=True), r)
            log.info("round %d: quantization-aware training starts (last %d rounds)", r, config.qat_rounds)
        if decision.action != "skipped" or decision.stopped != prev_stopped:
            log.info("round %d: prune %s (%s); widths %s", r, decision.action, decision.reason,
                     decision.widths_after)
        prev_stopped = decision.stopped

        clients = sample_clients(data.client_ids, config.clients_per_round, config.seed, r)
        seeds = [derive_seed(config.seed, r, data.client_ids.index(cid)) for cid in clients]
        if cluster is None:
            round_data = [data.client_dataset(cid, config.local_epochs, config.batch_size, seed)
                          for cid, seed in zip(clients, seeds)]
        else:  # the workers build the datasets from the keys; even work per worker
            keys = [distributed.client_key(cid, seed) for cid, seed in zip(clients, seeds)]
            round_data = distributed.balanced_order(keys, [client_sizes(cid) for cid in clients],
                                                    len(cluster.workers))
        result = call(lambda: process.next(state, round_data), f"round {r}")
        state = result.state
        assign_model_weights(call(lambda: process.get_model_weights(state), f"round {r}"), model)
        record = {"round": r, **_train_metrics(result.metrics), "qat": in_qat}
        if by_magnitude:  # masks of this round's sparsity, applied to the aggregate, sent with the next broadcast
            record["kernel_sparsity"] = magnitude.server_update(model, r)
            weights = keras_to_model_weights(model)
            state = call(lambda: process.set_model_weights(state, weights), f"round {r} (masks)")
        record["nonzero_params"] = magnitude.count_nonzero_params(model)
        if r % config.eval_every == 0 or r == config.rounds:
            loss, acc = model.evaluate(test_x, test_y, batch_size=1024, verbose=0)
            record.update(eval_loss=float(loss), eval_accuracy=float(acc))
        else:
            record.update(eval_loss=None, eval_accuracy=None)

        uploaded = sum(int(v.shape.num_elements()) for v in tff_variable_split(model)[0])
        sent = accounting.round_bytes(model, len(clients), uploaded_params=uploaded)
        counters["bytes_down"] += sent["bytes_down"]
        counters["bytes_up"] += sent["bytes_up"]
        record.update(params=summary["params"], flops=summary["flops"], widths=summary["widths"],
                      bytes_down=sent["bytes_down"], bytes_up=sent["bytes_up"],
                      cumulative_bytes_down=counters["bytes_down"], cumulative_bytes_up=counters["bytes_up"],
                      cumulative_bytes=counters["bytes_down"] + counters["bytes_up"], clients=clients,
                      prune=decision.to_dict(), wall_seconds=time.perf_counter() - t0)

        report.append_metrics(metrics_path, record)
        checkpoint.save(out, checkpoint.Checkpoint(
            round=r, config=config.to_dict(), model_json=model.to_json(), weights=model.get_weights(),
            controller=controller.state.to_dict(), counters=counters,
            float_model_json=float_arch.to_json() if model is not float_arch else None))
        records.append(record)
        acc = record["eval_accuracy"]
        bar.set_postfix(params=record["params"], acc="-" if acc is None else f"{acc:.3f}",
                        prune=decision.action)
    bar.close()
    if by_magnitude:
        model = float_arch = _compile(magnitude.strip(model))
    return RunResult(model=model, float_architecture=float_arch, records=records, initial=initial,
                     final=dict(accounting.summarize(float_arch)),
                     stop_reason=controller.state.stop_reason)
