"""ExperimentConfig: every knob of a federated pruning run, validated once.

Flags map one-to-one onto fields (``--clients-per-round`` -> ``clients_per_round``).
Validation raises :class:`ConfigError` whose message names the offending flag, so
a bad value is rejected before any data is read or any TFF computation is built.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional

DATA_DIR_ENV = "TFF_PRUNE_DATA_DIR"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(PROJECT_ROOT, os.pardir, "shared", "data")

DATASETS = ("femnist", "celeba")
MODELS = ("cnn", "resnet", "inception")
CRITERIA = ("band", "band_low", "ratio")
WEIGHT_MODES = ("inherit", "reinit")
METHODS = ("structured", "magnitude")
CLIENT_OPTIMIZERS = ("adam", "sgd")


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the flag and the fix."""


def resolve_data_dir(flag_value: Optional[str]) -> str:
    """Returns the directory holding the packed data files.

    Order: the ``--data-dir`` flag, else the ``TFF_PRUNE_DATA_DIR`` environment
    variable, else ``../shared/data`` next to the project root.
    """
    if flag_value:
        return os.path.abspath(os.path.expanduser(flag_value))
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.normpath(DEFAULT_DATA_DIR)


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
    """All settings of one simulation (see ``scripts/run_simulation.py --help``).

    Attributes:
      dataset: ``"femnist"`` or ``"celeba"``.
      model: ``"cnn"``, ``"resnet"`` (ResNet-7) or ``"inception"`` (the paper's architectures).
      rounds: number of federated rounds R (rounds are numbered 1..R).
      clients_per_round: clients sampled uniformly without replacement each round.
      local_epochs: client epochs per round (paper: 5).
      batch_size: client batch size (paper: 32).
      client_optimizer: ``"adam"`` (the paper's; a fresh ``tff.learning.optimizers.build_adam`` state per
        client and round, as TFF runs it) or ``"sgd"`` (plain SGD, ``build_sgdm`` without momentum).
      client_lr: client learning rate (paper: Adam 1e-3).
      server_lr: server SGD learning rate; 1.0 is plain FedAvg.
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
      workers: ``"host1:port,host2:port"`` of running TFF workers (``scripts/run_worker.py``);
        None runs on TFF's local runtime.
      round_timeout: seconds a round may take on the workers before the run stops with an
        error naming the round and the workers that did not answer.
      method: ``"structured"`` (the paper's filter pruning) or ``"magnitude"`` (the unstructured
        tfmot ``prune_low_magnitude`` baseline, ``federated/magnitude.py``; its sparsity ramps up to
        ``target_sparsity`` by ``max_prune_round``).
      target_sparsity: with ``method="magnitude"``, the final fraction of zeros in every Conv2D/Dense kernel.
      qat_rounds: the last N rounds train the tfmot quantization-aware version of the final
        architecture in TFF (0: no QAT). Pruning stops when they start.
    """

    dataset: str = "femnist"
    model: str = "cnn"
    rounds: int = 20
    clients_per_round: int = 10
    local_epochs: int = 5
    batch_size: int = 32
    client_optimizer: str = "adam"
    client_lr: float = 1e-3
    server_lr: float = 1.0
    k: float = 2.2
    criterion: str = "band"
    prune_ratio: float = 0.2
    round_to: int = 1
    round_mode: str = "up"
    min_channels: int = 1
    max_prune_round: int = 50
    patience: int = 3
    weights: str = "inherit"
    prune: bool = True
    seed: int = 0
    eval_every: int = 1
    output_dir: str = "runs/default"
    data_dir: str = dataclasses.field(default_factory=lambda: resolve_data_dir(None))
    femnist_crop: bool = False
    celeba_attribute: str = "male"
    max_clients: Optional[int] = None
    latency_runs: int = 200
    qat_rounds: int = 0
    method: str = "structured"
    target_sparsity: float = 0.5
    workers: Optional[str] = None
    round_timeout: float = 600.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the flag of the first invalid value."""
        def fail(flag, msg):
            raise ConfigError(f"--{flag}: {msg}")

        if self.dataset not in DATASETS:
            fail("dataset", f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.model not in MODELS:
            fail("model", f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.weights not in WEIGHT_MODES:
            fail("weights", f"must be 'inherit' or 'reinit', got {self.weights!r}")
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
        if self.round_mode not in ("up", "down", "final"):
            fail("round-mode", f"must be 'up', 'down' or 'final', got {self.round_mode!r}")
        if self.criterion not in CRITERIA:
            fail("criterion", f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not (0 <= self.prune_ratio < 1):
            fail("prune-ratio", f"must be in [0, 1) (fraction of each group's channels removed), "
                                f"got {self.prune_ratio!r}")
        if self.femnist_crop and self.dataset != "femnist":
            fail("femnist-crop", f"only applies to --dataset femnist, not {self.dataset!r}")
        if self.dataset == "celeba":
            from tff_prune.data.celeba import check_attribute

            try:
                check_attribute(self.celeba_attribute)
            except ValueError as e:
                fail("celeba-attribute", str(e))
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
                fail("workers", f"{e}; give host:port,host:port of workers started with scripts/run_worker.py")
        if not (self.round_timeout > 0):
            fail("round-timeout", f"must be > 0 seconds, got {self.round_timeout!r}")
        if not self.output_dir:
            fail("output-dir", "must not be empty")

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

    def resume_mismatches(self, saved: "ExperimentConfig") -> list[str]:
        """Lists flags whose value differs from the checkpointed run (excluding rounds, paths)."""
        out = []
        for f in dataclasses.fields(self):
            if f.name in self.RESUMABLE_CHANGES:
                continue
            a, b = getattr(self, f.name), getattr(saved, f.name)
            if a != b:
                out.append(f"--{f.name.replace('_', '-')} (checkpoint: {json.dumps(b)}, now: {json.dumps(a)})")
        return out
