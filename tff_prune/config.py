"""ExperimentConfig: every knob of a federated pruning run, validated once.

Flags map one-to-one onto fields (``--clients-per-round`` -> ``clients_per_round``). Each field's metadata
(:func:`setting`: help text, flag group, choices, how its default reads) is the one definition of its flag:
``tff_prune.flags`` builds the command-line parser and the README's flag table from it.
Validation raises :class:`ConfigError` whose message names the offending flag, so
a bad value is rejected before any data is read or any TFF computation is built.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Optional

from tff_prune.data.catalog import DATASETS, resolve_data_dir

# = models.registry.MODEL_NAMES (tested)
MODELS = ("cnn", "resnet", "inception", "mobilenetv2", "mobilenetv3small", "mobilenetv2_gn", "mobilenetv3small_gn")
CRITERIA = ("band", "band_low", "ratio")
WEIGHT_MODES = ("inherit", "reinit")
METHODS = ("structured", "magnitude")
SCHEDULES = ("auto", "paper")
CLIENT_OPTIMIZERS = ("adam", "sgd", "shared_adam")
SERVER_OPTIMIZERS = ("sgd", "adam", "yogi")


ROUND_MODES = ("up", "down", "final")


def setting(default: Any = dataclasses.MISSING, *, help: str, group: str, choices: Optional[tuple] = None,
            shown: Optional[str] = None, metavar: Optional[str] = None, flag: Optional[str] = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with the metadata of its command-line flag.

    Args:
      default / default_factory: the field's default.
      help: what the flag means (the README's "meaning" column and ``--help``).
      group: the ``--help`` section.
      choices: allowed values (argparse checks them too).
      shown: how the default reads in the README table (default: the value in backquotes).
      metavar: argparse metavar. flag: the flag when it is not ``--<field-with-dashes>`` (e.g. ``--no-prune``).
    """
    meta = {"help": help, "group": group, "choices": choices, "shown": shown, "metavar": metavar, "flag": flag}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the flag and the fix."""


def parse_workers(spec: str) -> list[str]:
    """``"host1:port,host2:port"`` (``--workers``) -> list of addresses.

    Raises:
      ValueError: empty list, a missing or non-numeric port, or a duplicate address.
    """
    out = []
    for item in (s.strip() for s in spec.split(",")):
        host, sep, port = item.rpartition(":")
        if not item or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port (e.g. 10.0.0.5:8000)")
        if item in out:
            raise ValueError(f"worker {item} is listed twice")
        out.append(item)
    return out


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """All settings of one simulation (see ``tff-prune-run --help``).

    Attributes:
      dataset: ``"femnist"`` or ``"celeba"``.
      model: ``"cnn"``, ``"resnet"`` (ResNet-7) or ``"inception"`` (the paper's architectures).
      rounds: number of federated rounds R (rounds are numbered 1..R).
      clients_per_round: clients sampled uniformly without replacement each round.
      local_epochs: client epochs per round (paper: 5).
      batch_size: client batch size (paper: 32).
      client_optimizer: ``"adam"`` (the paper's; a fresh ``tff.learning.optimizers.build_adam`` state per
        client and round, as TFF runs it), ``"sgd"`` (plain SGD, ``build_sgdm`` without momentum) or
        ``"shared_adam"`` (one server-held Adam state the clients continue; ``federated/shared_adam.py``).
      client_lr: client learning rate (paper: Adam 1e-3).
      server_lr: server learning rate; SGD 1.0 is plain FedAvg.
      server_optimizer: ``"sgd"`` (FedAvg), ``"adam"`` (FedAdam) or ``"yogi"`` (FedYogi) on the server.
      k: band width of the criterion mu +- k*sigma (paper: 2.2 on FEMNIST).
      criterion: ``"band"`` (the paper's, uses ``k``), ``"band_low"`` (its lower bound only: removes
        unusually weak channels, keeps unusually strong ones; uses ``k``) or ``"ratio"`` (uses ``prune_ratio``).
      prune_ratio: with ``criterion="ratio"``, fraction of each group's channels removed per prune.
      round_to: every pruned group keeps a multiple of this many channels (8 suits XNNPACK).
      round_mode: ``"up"`` (put back the strongest removed channels) or ``"down"`` (remove the
        weakest kept ones) to reach the multiple in every prune (see ``pruning.plan``), or
        ``"final"``: prune without rounding, then once pruning has stopped round every group
        down to the multiple (one extra prune of the weakest channels).
      min_channels: fewest channels a group keeps.
      max_prune_round: last round after whose aggregation pruning may happen (paper: 50).
      patience: consecutive rounds without a parameter drop before pruning stops (paper: 3).
      weights: ``"inherit"`` (survivors keep weights) or ``"reinit"`` (authors' fresh init).
      prune: False gives the plain FedAvg baseline (``--no-prune``).
      seed: seeds client sampling, client shuffling, model init and re-init.
      eval_every: evaluate the global model every this many rounds (and at the last round).
      output_dir: where metrics, checkpoints, model and reports go.
      data_dir: directory with the packed data files (resolved, absolute).
      celeba_attribute: CelebA label attribute, TFF's name (paper: ``male``).
      femnist_crop: apply the authors' crop ``[5:20, 5:20]`` resized back to 28x28.
      max_clients: use only the first N writers (None: all); for quick runs and tests.
      latency_runs: timed TFLite invokes for the host latency of the final model.
      workers: ``"host1:port,host2:port"`` of running TFF workers (``tff-prune-worker``);
        None runs on TFF's local runtime.
      round_timeout: seconds a round may take on the workers before the run stops with an
        error naming the round and the workers that did not answer.
      method: ``"structured"`` (the paper's filter pruning) or ``"magnitude"`` (the unstructured
        tfmot ``prune_low_magnitude`` baseline, ``federated/magnitude.py``; its sparsity ramps up to
        ``target_sparsity`` by ``max_prune_round``).
      target_sparsity: with ``method="magnitude"``, the final fraction of zeros in every Conv2D/Dense kernel.
      qat_rounds: the last N rounds train the tfmot quantization-aware version of the final
        architecture in TFF (0: no QAT). Pruning stops when they start.
      schedule: how structured pruning decides: ``"auto"`` (the default: warm-up to a plateau of the federated
        validation accuracy, then weak-tail candidates accepted only within an accuracy budget;
        ``federated/steps/auto.py``) or ``"paper"`` (the paper's band every round of the window, accepted on a
        parameter drop; uses ``criterion``, ``k``, ``max_prune_round``, ``weights``).
      val_clients: with ``schedule="auto"``: clients per round whose training examples evaluate the global model
        (TFF federated evaluation; never the central test data).
      max_accuracy_loss: with ``schedule="auto"``: total validation-accuracy cost (absolute, e.g. 0.01 = 1 point)
        the accepted candidates may add up to.
      step_fraction: with ``schedule="auto"``: fraction of every group's channels the first candidate removes
        (halved after each rejection).
      recovery_rounds: with ``schedule="auto"``: rounds a candidate trains beside the current architecture
        before it is judged (None: ``R // 20`` clamped to [2, 10]).
      plateau_window: with ``schedule="auto"``: rounds per window of the plateau test (None: ``R // 20``
        clamped to [3, 10]).
      warmup_rounds: with ``schedule="auto"``: a fixed warm-up of N rounds instead of the plateau test (None).
    """

    dataset: str = setting("femnist", group="data and model", choices=DATASETS,
                           help="`femnist` (300 real writers, 62 classes) or `celeba` (276 real celebrities, one binary attribute)")
    model: str = setting("cnn", group="data and model", choices=MODELS,
                         help="the paper's architectures: `cnn`, `resnet` (ResNet-7), `inception` (naive Inception), table below; "
                              "Keras' `mobilenetv2` (alpha 0.35), `mobilenetv3small`, and both with GroupNorm for "
                              "BatchNorm (`mobilenetv2_gn`, `mobilenetv3small_gn`), section \"Mobile CNNs\"")
    data_dir: str = setting(group="data and model", default_factory=lambda: resolve_data_dir(None), metavar="DIR",
                            shown="`$TFF_PRUNE_DATA_DIR`, else `../shared/data`",
                            help="folder with `femnist_leaf_300w.npz` / `celeba_wild_crops84_276ids.npz`")
    femnist_crop: bool = setting(False, group="data and model", help="the authors' crop `[5:20, 5:20]` resized back to 28x28")
    celeba_attribute: str = setting("male", group="data and model",
                                    help="CelebA label, TFF's attribute name (`smiling`, `young`, …)")
    max_clients: Optional[int] = setting(None, group="data and model", shown="all", metavar="N",
                                         help="use only the first N training clients (quick experiments)")
    rounds: int = setting(20, group="federated training (FedAvg)", help="federated rounds, numbered 1..R")
    clients_per_round: int = setting(10, group="federated training (FedAvg)",
                                     help="clients sampled uniformly without replacement; seeded by `(seed, round)`")
    local_epochs: int = setting(5, group="federated training (FedAvg)", help="client epochs per round (paper: 5)")
    batch_size: int = setting(32, group="federated training (FedAvg)", help="client batch size (paper: 32)")
    client_optimizer: str = setting("adam", group="federated training (FedAvg)", choices=CLIENT_OPTIMIZERS,
                                    help="`adam` (the paper's; fresh moments for every client and round, as TFF runs "
                                         "it), `sgd` (plain, no momentum), or `shared_adam`: the clients continue one "
                                         "Adam state the server holds (moments and step count broadcast each round, "
                                         "example-weighted mean of the clients' final moments back; FedCAda-style, "
                                         "closest to the authors' sequential loop; what CelebA `male` needs)")
    client_lr: float = setting(1e-3, group="federated training (FedAvg)", help="client learning rate (the paper's Adam: 1e-3)")
    server_lr: float = setting(1.0, group="federated training (FedAvg)",
                               help="server learning rate (SGD 1.0 = plain FedAvg; FedAdam/FedYogi use e.g. 1e-2)")
    server_optimizer: str = setting("sgd", group="federated training (FedAvg)", choices=SERVER_OPTIMIZERS,
                                    help="the server's optimizer on the averaged client update: `sgd` (no momentum: "
                                         "FedAvg), `adam` (FedAdam) or `yogi` (FedYogi), TFF's "
                                         "`tff.learning.optimizers` (Reddi et al. 2021, Adaptive Federated "
                                         "Optimization); its state is checkpointed, and restarts when the "
                                         "architecture changes")
    seed: int = setting(0, group="federated training (FedAvg)", help="client sampling, client shuffling, model init and re-init")
    eval_every: int = setting(1, group="federated training (FedAvg)", metavar="N",
                              help="evaluate the global model on the test split of all writers in use every N rounds "
                                   "(and at the end); reported only, never used by a decision")
    prune: bool = setting(True, group="automatic pruning", flag="--no-prune", shown="off", help="plain FedAvg baseline")
    schedule: str = setting("auto", group="automatic pruning", choices=SCHEDULES,
                            help="how structured pruning decides. `auto` (the default): warm-up until the federated "
                                 "validation accuracy plateaus, then candidates without each group's weakest filters "
                                 "train beside the current model and are accepted only within `--max-accuracy-loss` "
                                 "(section \"The default: --schedule auto\"); `paper`: the paper's criterion every "
                                 "round of `--max-prune-round`, accepted on any parameter drop")
    val_clients: int = setting(20, group="auto schedule",
                               help="auto: clients per round whose training examples evaluate the global model "
                                    "(TFF federated evaluation; never the central test data)")
    max_accuracy_loss: float = setting(0.01, group="auto schedule",
                                       help="auto: validation accuracy (absolute; 0.01 = 1 point) the accepted "
                                            "candidates may cost in all")
    step_fraction: float = setting(0.25, group="auto schedule",
                                   help="auto: fraction of every group's channels the first candidate removes; "
                                        "halves after each rejection")
    recovery_rounds: Optional[int] = setting(None, group="auto schedule", metavar="F", shown="R/20 in [2, 10]",
                                             help="auto: rounds a candidate trains beside the current model before it "
                                                  "is judged (on the last ceil(F/2))")
    plateau_window: Optional[int] = setting(None, group="auto schedule", metavar="W", shown="R/20 in [3, 10]",
                                            help="auto: rounds per window of the warm-up's plateau test")
    warmup_rounds: Optional[int] = setting(None, group="auto schedule", metavar="N", shown="automatic",
                                           help="auto: end the warm-up after exactly N rounds instead of at the "
                                                "plateau (the first trial starts at round N + 1)")
    criterion: str = setting("band", group="automatic pruning", choices=CRITERIA,
                             help="paper: `band`: keep channels with μ−kσ ≤ importance ≤ μ+kσ per group (the paper's); "
                                  "`band_low`: keep importance ≥ μ−kσ (only the weak tail goes; not in the paper); "
                                  "`ratio`: remove `--prune-ratio` of each group's least important channels")
    k: float = setting(2.2, group="automatic pruning", help="band width for `band` and `band_low` (paper: 2.0–2.5)")
    prune_ratio: float = setting(0.2, group="automatic pruning", help="with `--criterion ratio`")
    round_to: int = setting(1, group="automatic pruning", metavar="N",
                            help="every pruned group keeps a multiple of N channels (8 suits XNNPACK); auto rounds "
                                 "every candidate down")
    round_mode: str = setting("up", group="automatic pruning", choices=ROUND_MODES,
                              help="paper, in every prune, `up`: put back a group's most important removed channels up "
                                   "to the multiple; `down`: remove its least important kept ones down to the multiple. "
                                   "`final`: prune without rounding, then once pruning stops round every group down "
                                   "once. The band removes 1–3 filters of a group per round, so `up` prunes nothing and "
                                   "`down` shrinks every group to `--round-to` within a few rounds; with the band use "
                                   "`final`")
    min_channels: int = setting(1, group="automatic pruning", help="fewest channels a group keeps")
    max_prune_round: int = setting(50, group="automatic pruning",
                                   help="paper: the aggregates of rounds 1..50 may be pruned; magnitude: the round its "
                                        "sparsity reaches `--target-sparsity`")
    patience: int = setting(3, group="automatic pruning",
                            help="paper: consecutive rounds without a parameter drop before pruning stops; auto: "
                                 "rejected candidates before pruning stops")
    weights: str = setting("inherit", group="automatic pruning", choices=WEIGHT_MODES,
                           help="paper: `inherit`: survivors keep their weights; `reinit`: fresh init after each "
                                "prune (the authors')")
    method: str = setting("structured", group="automatic pruning", choices=METHODS,
                          help="`structured`: filter pruning (`--schedule`); `magnitude`: the unstructured baseline, "
                               "tfmot `prune_low_magnitude` trained in TFF (section \"Unstructured baseline\")")
    target_sparsity: float = setting(0.5, group="automatic pruning",
                                     help="with `--method magnitude`: final fraction of zeros in every Conv2D/Dense "
                                          "kernel, reached at `--max-prune-round`")
    qat_rounds: int = setting(0, group="automatic pruning", metavar="N",
                              help="the last N rounds train the quantization-aware (tfmot) final architecture in TFF; "
                                   "pruning stops when they start; exports `qat_int8` next to post-training `int8`")
    workers: Optional[str] = setting(None, group="distributed (TFF's remote runtime)", metavar="h:p,h:p", shown="none (local)",
                                     help="run rounds on TFF workers started with `tff-prune-worker` (section "
                                          "\"Several machines\")")
    round_timeout: float = setting(600.0, group="distributed (TFF's remote runtime)", shown="600",
                                   help="seconds a round may take on the workers before the run stops naming the "
                                        "silent worker (exit 4)")
    output_dir: str = setting("runs/default", group="outputs", help="where everything goes")
    latency_runs: int = setting(200, group="outputs", help="timed TFLite invokes for the latency median")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the flag of the first invalid value."""
        def fail(flag, msg):
            raise ConfigError(f"--{flag}: {msg}")

        for f in dataclasses.fields(self):  # inf/nan pass every `x > 0` test below; no setting means them
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                fail(_flag_of(f)[2:], f"must be a finite number, got {value!r}")

        if self.dataset not in DATASETS:
            fail("dataset", f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.model not in MODELS:
            fail("model", f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.weights not in WEIGHT_MODES:
            fail("weights", f"must be one of {', '.join(WEIGHT_MODES)}, got {self.weights!r}")
        for flag, value in (("rounds", self.rounds), ("clients-per-round", self.clients_per_round),
                            ("local-epochs", self.local_epochs), ("batch-size", self.batch_size),
                            ("eval-every", self.eval_every), ("patience", self.patience),
                            ("latency-runs", self.latency_runs), ("round-to", self.round_to),
                            ("min-channels", self.min_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(flag, f"must be an integer >= 1, got {value!r}")
        if not isinstance(self.qat_rounds, int) or not 0 <= self.qat_rounds <= self.rounds:
            fail("qat-rounds", f"must be an integer in [0, --rounds={self.rounds}], got {self.qat_rounds!r}")
        if self.method not in METHODS:
            fail("method", f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "magnitude":
            if not (0 < self.target_sparsity < 1):
                fail("target-sparsity",
                     f"must be in (0, 1) (fraction of zeros per kernel), got {self.target_sparsity!r}")
            if not self.prune:
                fail("method", "magnitude prunes; drop --no-prune (or drop --method magnitude for plain FedAvg)")
            if self.qat_rounds:
                fail("qat-rounds", "quantization-aware training is not combined with --method magnitude; use 0")
            if self.max_prune_round < 1:
                fail("max-prune-round", "with --method magnitude it is the round the sparsity reaches "
                                        f"--target-sparsity and must be >= 1, got {self.max_prune_round!r}")
        if self.max_prune_round < 0:
            fail("max-prune-round", f"must be >= 0, got {self.max_prune_round!r}")
        if not (self.k > 0):
            fail("k", f"must be > 0 (the band is mu +- k*sigma; the paper uses 2.0-2.5), got {self.k!r}")
        if self.round_mode not in ROUND_MODES:
            fail("round-mode", f"must be one of {', '.join(ROUND_MODES)}, got {self.round_mode!r}")
        if self.criterion not in CRITERIA:
            fail("criterion", f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not (0 <= self.prune_ratio < 1):
            fail("prune-ratio", f"must be in [0, 1) (fraction of each group's channels removed), "
                                f"got {self.prune_ratio!r}")
        if self.femnist_crop and self.dataset != "femnist":
            fail("femnist-crop", f"only applies to --dataset femnist, not {self.dataset!r}")
        if self.dataset == "celeba":
            # TFF's attribute list imports TF, TFF and jax (which sets TF_CPP_MIN_LOG_LEVEL=1): import TF first
            # through the filter, or the run starts with TF's CUDA-registration errors and grappler INFO lines.
            from tff_prune.tf_logging import import_tensorflow

            import_tensorflow()
            from tff_prune.data.celeba import check_attribute

            try:
                check_attribute(self.celeba_attribute)
            except ValueError as e:
                fail("celeba-attribute", str(e))
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            fail("server-optimizer", f"unknown server optimizer {self.server_optimizer!r}; choose one of "
                                     f"{', '.join(SERVER_OPTIMIZERS)}")
        if self.client_optimizer not in CLIENT_OPTIMIZERS:
            fail("client-optimizer", f"unknown client optimizer {self.client_optimizer!r}; choose one of "
                                     f"{', '.join(CLIENT_OPTIMIZERS)}")
        if not (self.client_lr > 0):
            fail("client-lr", f"must be > 0, got {self.client_lr!r}")
        if not (self.server_lr > 0):
            fail("server-lr", f"must be > 0, got {self.server_lr!r}")
        if self.seed < 0:
            fail("seed", f"must be >= 0, got {self.seed!r}")
        if self.max_clients is not None and self.max_clients < 1:
            fail("max-clients", f"must be >= 1, got {self.max_clients!r}")
        if self.max_clients is not None and self.clients_per_round > self.max_clients:
            fail("clients-per-round", f"{self.clients_per_round} clients per round but --max-clients is "
                 f"{self.max_clients}; lower --clients-per-round or raise --max-clients")
        if self.workers is not None:
            try:
                parse_workers(self.workers)
            except ValueError as e:
                fail("workers", f"{e}; give host:port,host:port of workers started with tff-prune-worker")
        if not (self.round_timeout > 0):
            fail("round-timeout", f"must be > 0 seconds, got {self.round_timeout!r}")
        if not self.output_dir or not self.output_dir.strip():
            fail("output-dir", f"must name a folder, got {self.output_dir!r} (an empty name would write the run "
                               f"into the current directory)")
        if self.schedule not in SCHEDULES:
            fail("schedule", f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not isinstance(self.val_clients, int) or isinstance(self.val_clients, bool) or self.val_clients < 1:
            fail("val-clients", f"must be an integer >= 1, got {self.val_clients!r}")
        if not (0 <= self.max_accuracy_loss < 1):
            fail("max-accuracy-loss", f"must be in [0, 1) (absolute accuracy, 0.01 = 1 point), "
                                      f"got {self.max_accuracy_loss!r}")
        if not (0 < self.step_fraction < 1):
            fail("step-fraction", f"must be in (0, 1) (fraction of each group's channels), got {self.step_fraction!r}")
        for flag, value in (("recovery-rounds", self.recovery_rounds), ("plateau-window", self.plateau_window),
                            ("warmup-rounds", self.warmup_rounds)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                fail(flag, f"must be an integer >= 1 (or omitted for the default), got {value!r}")
        if self.prune and self.method == "structured" and self.schedule == "auto" and self.weights == "reinit":
            fail("weights", "reinit is the paper's architecture search; it needs --schedule paper "
                            "(--schedule auto keeps the survivors' weights)")

    def check_num_clients(self, available: int) -> None:
        """Raises ConfigError if more clients per round are asked than exist."""
        if self.clients_per_round > available:
            raise ConfigError(
                f"--clients-per-round: {self.clients_per_round} requested but the {self.dataset} data has only "
                f"{available} clients; use --clients-per-round <= {available}")

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExperimentConfig":
        """Builds a config from :meth:`to_dict` output (unknown keys raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)

    # Fields that may differ between an interrupted run and its --resume.
    RESUMABLE_CHANGES = ("rounds", "output_dir", "data_dir", "latency_runs", "workers", "round_timeout")

    def unused_settings(self) -> set[str]:
        """Fields this run never reads: every pruning setting of a ``--no-prune`` run, the other schedule's."""
        pruning = {f.name for f in dataclasses.fields(self) if f.metadata.get("group") in (
            "automatic pruning", "auto schedule")} - {"prune", "method", "qat_rounds"}
        auto = {f.name for f in dataclasses.fields(self) if f.metadata.get("group") == "auto schedule"}
        if not self.prune:
            return pruning
        if self.method == "magnitude":
            return pruning - {"target_sparsity", "max_prune_round"}
        return auto if self.schedule == "paper" else set()

    def resume_mismatches(self, saved: "ExperimentConfig") -> list[str]:
        """Lists flags whose value differs from the checkpointed run (excluding rounds, paths, unused settings)."""
        out = []
        unused = self.unused_settings() & saved.unused_settings()
        for f in dataclasses.fields(self):
            if f.name in self.RESUMABLE_CHANGES or f.name in unused:
                continue
            a, b = getattr(self, f.name), getattr(saved, f.name)
            if a != b:
                out.append(f"{_flag_of(f)} (checkpoint: {_shown_value(f, b)}, now: {_shown_value(f, a)})")
        return out


def _flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a field (``prune`` -> ``--no-prune``); ``tff_prune.flags.flag_name`` uses it."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _shown_value(f: dataclasses.Field, value: Any) -> str:
    """A value as the command line gives it: on/off switches read ``given`` / ``not given``."""
    if isinstance(value, bool):
        given = value != f.default  # a switch flips its field's default
        return "given" if given else "not given"
    return json.dumps(value)
