"""Rounds across machines with TFF's own distributed runtime (``worker_binary`` + mergeable contexts).

TFF 0.87 pieces used (none replaced):

- ``tensorflow_federated/data/worker_binary --port=P``: TFF's C++ executor service (the same
  binary the local context starts, ``executor_factory.local_cpp_executor_factory``).
- one ``tff.framework.AsyncExecutionContext`` per worker, whose executor is a
  ``tff.framework.RemoteExecutor`` over ``tff.framework.RemoteExecutorGrpcStub`` (gRPC);
- ``tff.backends.native.create_mergeable_comp_execution_context(contexts, num_subrounds)``,
  which compiles a round to mergeable form, splits its clients across the contexts
  (``num_subrounds`` = number of workers, so each worker gets a fixed share) and merges
  the partial aggregates;
- ``tff.simulation.compose_dataset_computation_with_learning_process``: the round takes
  client *keys* and each worker builds the client datasets itself, from its own copy of the
  TFF SQLite cache, with pure TF ops (``worker_binary`` has no ``tf.py_function`` kernel).

Two things TFF does not do, added here without replacing its runtime:

- Parallel workers: ``RemoteExecutor`` makes blocking gRPC calls inside ``async def`` and the
  mergeable context drives every context from one event loop, so stock workers take turns.
  :class:`ThreadedContext` runs each worker's context on its own thread and event loop.
- Deadlines: a dead worker makes TFF retry forever (back-off to 30 s) and a frozen one blocks
  with no deadline. :class:`Cluster` runs each round under ``round_timeout`` and raises
  :class:`WorkerError` naming the round and the workers that had not answered. TFF's retries
  ("Received retryable gRPC error", logged by TFF at INFO) are re-logged as warnings.

``worker_binary`` has no TLS or authentication and listens on all interfaces: run workers only
on a private network or behind a firewall.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Callable, Optional, Sequence

import grpc
import tensorflow as tf
import tensorflow_federated as tff

from tff_prune.config import parse_workers

log = logging.getLogger(__name__)
WORKER_BINARY = os.path.join(os.path.dirname(tff.__file__), "data", "worker_binary")
_GRPC_OPTIONS = [("grpc.max_message_length", -1), ("grpc.max_receive_message_length", -1),
                 ("grpc.max_send_message_length", -1)]
_KEY_SEPARATOR = "|"


class WorkerError(RuntimeError):
    """A worker is unreachable, died or froze; the message names its address, the round and the fix."""


def worker_command(port: int, max_concurrent_computation_calls: int = -1) -> list[str]:
    """The command line that starts TFF's C++ worker on ``port`` (what ``tff-prune-worker`` execs)."""
    return [WORKER_BINARY, f"--port={int(port)}",
            f"--max_concurrent_computation_calls={int(max_concurrent_computation_calls)}"]


class _RetryLog(logging.Handler):
    """Re-logs TFF's 'Received retryable gRPC error' (absl INFO) as a warning of this module."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "retryable" in msg.lower():
            log.warning("TFF retries a worker call: %s", msg.splitlines()[0][:300])


def _install_retry_log() -> None:
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(h, _RetryLog) for h in absl_logger.handlers):
        handler = _RetryLog(level=logging.INFO)
        absl_logger.addHandler(handler)
        if absl_logger.level == logging.NOTSET or absl_logger.level > logging.INFO:
            absl_logger.setLevel(logging.INFO)
            # Only our handler should see TFF's INFO lines; keep them off the root handlers.
            absl_logger.propagate = False


class ThreadedContext(tff.framework.AsyncContext):
    """One worker's TFF ``AsyncExecutionContext``, run on its own thread and event loop.

    Args:
      address: ``host:port`` of a running ``worker_binary``.

    Attributes:
      address: the worker; pending: number of calls in flight (read by :class:`Cluster`).
    """

    def __init__(self, address: str):
        self.address = address
        self.pending = 0
        self._channel = grpc.insecure_channel(address, _GRPC_OPTIONS)
        stub = tff.framework.RemoteExecutorGrpcStub(self._channel)

        def stack_fn(cardinalities):
            # Without a clients cardinality TFF cannot run `initialize` ("No cardinality provided for `clients`").
            cardinalities.setdefault(tff.CLIENTS, 0)
            executor = tff.framework.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        # As tff.backends.native.create_async_local_cpp_execution_context, with a remote executor.
        from tensorflow_federated.python.core.backends.native import compiler

        self._inner = tff.framework.AsyncExecutionContext(
            executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
            compiler_fn=compiler.desugar_and_transform_to_native,
            transform_args=tff.tensorflow.transform_args,
            transform_result=tff.tensorflow.transform_result)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"tff-worker-{address}")
        self._thread.start()

    def wait_ready(self, timeout: float) -> None:
        """Blocks until the worker's gRPC service answers.

        Raises:
          WorkerError: not reachable within ``timeout`` seconds.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise WorkerError(f"worker {self.address} is not reachable (no gRPC service within {timeout:g} s). "
                              f"Start it on that machine with `tff-prune-worker --port "
                              f"{self.address.rpartition(':')[2]}`, check host, port and firewall, or drop it "
                              f"from --workers") from None

    async def invoke(self, comp: Any, arg: Any) -> Any:
        self.pending += 1
        try:
            future = asyncio.run_coroutine_threadsafe(self._inner.invoke(comp, arg), self._loop)
            return await asyncio.wrap_future(future)
        finally:
            self.pending -= 1


class Cluster:
    """TFF's mergeable-comp context over remote workers, with a per-round deadline.

    Args:
      workers: ``host:port`` addresses of running ``worker_binary`` processes.
      round_timeout: seconds one call (a round, ``initialize``) may take before :class:`WorkerError`.
      connect_timeout: seconds to wait for each worker at start (at most ``round_timeout``).

    Raises:
      WorkerError: a worker is not reachable at start.
    """

    def __init__(self, workers: Sequence[str], round_timeout: float = 600.0, connect_timeout: float = 15.0):
        connect_timeout = min(connect_timeout, round_timeout)
        self.workers = list(workers)
        self.round_timeout = float(round_timeout)
        self.contexts = [ThreadedContext(a) for a in self.workers]
        for ctx in self.contexts:
            ctx.wait_ready(connect_timeout)
        _install_retry_log()
        self.context = tff.backends.native.create_mergeable_comp_execution_context(
            self.contexts, num_subrounds=len(self.contexts))

    def install(self) -> None:
        """Makes this cluster TFF's default execution context (every ``process.next`` runs on it)."""
        tff.framework.get_context_stack().set_default_context(self.context)

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        """Runs ``fn()`` (a TFF invocation) under the deadline.

        Args:
          what: words for the error message, e.g. ``"round 7"``.

        Raises:
          WorkerError: no result within ``round_timeout``; names the workers still busy.
          Any error ``fn`` raises (e.g. a data error on a worker) is re-raised as is.
        """
        box: dict = {}

        def target():
            try:
                # TFF's context stack is per thread: install the cluster's context in this one.
                with tff.framework.get_context_stack().install(self.context):
                    box["result"] = fn()
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e

        thread = threading.Thread(target=target, daemon=True, name=f"tff-call-{what}")
        start = time.monotonic()
        thread.start()
        thread.join(self.round_timeout)
        if thread.is_alive():
            busy = [c.address for c in self.contexts if c.pending] or self.workers
            raise WorkerError(
                f"{what}: no result within --round-timeout {self.round_timeout:g} s; still waiting on worker(s) "
                f"{', '.join(busy)} (down, frozen or too slow). Restart them and continue with --resume, or "
                f"--resume with the remaining --workers; raise --round-timeout if rounds are just slow")
        if "error" in box:
            raise box["error"]
        log.debug("%s took %.2f s on %d workers", what, time.monotonic() - start, len(self.workers))
        return box["result"]


def dataset_computation(client_data, preprocess_fn: Callable, local_epochs: int, batch_size: int,
                        shuffle_buffer: int = 512) -> tff.Computation:
    """A TFF computation ``key -> client tf.data`` that runs where the client's work runs.

    ``key`` is ``"<client id>|<shuffle seed>"`` (see :func:`client_key`). The pipeline equals
    :meth:`tff_prune.data.FederatedData.client_dataset`: TFF ``serializable_dataset_fn`` (the SQLite
    cache, read on the worker) -> preprocess -> shuffle(seeded) -> repeat(local_epochs) -> batch.
    """
    @tff.tensorflow.computation(tf.string)
    def build(key):
        parts = tf.strings.split(key, _KEY_SEPARATOR)
        seed = tf.strings.to_number(parts[1], out_type=tf.int64)
        ds = client_data.serializable_dataset_fn(parts[0]).map(preprocess_fn)
        return ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat(local_epochs) \
            .batch(batch_size)

    return build


def balanced_order(items: Sequence, sizes: Sequence[int], parts: int) -> list:
    """Reorders ``items`` so that TFF's contiguous split into ``parts`` shares has even total ``sizes``.

    The mergeable-comp context gives each worker a contiguous slice of the round's clients
    (``mergeable_comp_execution_context._split_value_into_subrounds``: as equal counts as possible).
    Greedy longest-processing-time assignment into slices of those counts, largest client first,
    so the slowest worker does as little more than the others as the sizes allow.

    Returns:
      the same items, reordered (slice ``i`` of TFF's split goes to worker ``i``).
    """
    n = len(items)
    if parts <= 1 or n <= parts:
        return list(items)
    counts = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    bins: list[list] = [[] for _ in range(parts)]
    loads = [0] * parts
    for i in sorted(range(n), key=lambda i: -sizes[i]):
        open_bins = [b for b in range(parts) if len(bins[b]) < counts[b]]
        b = min(open_bins, key=lambda b: loads[b])
        bins[b].append(items[i])
        loads[b] += sizes[i]
    return [x for b in bins for x in b]


def client_key(client_id: str, seed: int) -> str:
    """The key :func:`dataset_computation` reads: client id and shuffle seed.

    Raises:
      ValueError: the client id contains the separator ``|``.
    """
    if _KEY_SEPARATOR in client_id:
        raise ValueError(f"client id {client_id!r} contains {_KEY_SEPARATOR!r}")
    return f"{client_id}{_KEY_SEPARATOR}{int(seed)}"


def compose(process: tff.learning.templates.LearningProcess, dataset_comp: tff.Computation,
            ) -> tff.learning.templates.LearningProcess:
    """The learning process whose ``next`` takes client keys (datasets built on the workers)."""
    return tff.simulation.compose_dataset_computation_with_learning_process(dataset_comp, process)


def default_cluster(workers: Optional[str], round_timeout: float) -> Optional[Cluster]:
    """A :class:`Cluster` for ``--workers`` (None without it: TFF's local context)."""
    if not workers:
        return None
    return Cluster(parse_workers(workers), round_timeout=round_timeout)
