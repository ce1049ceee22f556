"""Rounds on two TFF workers (worker_binary on loopback): same result as one machine; dead workers named."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest

from tff_prune.config import ConfigError, ExperimentConfig, parse_workers

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--rounds", "3", "--clients-per-round", "4", "--max-clients", "20", "--local-epochs", "1", "--k", "1.0",
          "--schedule", "paper",
          "--seed", "3", "--latency-runs", "5", "--tflite-variants", "float32", "--quiet"]


def start_worker(port):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "run_worker.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def workers():
    ports = [portpicker.pick_unused_port() for _ in range(2)]
    procs = {p: start_worker(p) for p in ports}
    yield ports, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def simulate(args, timeout=400):
    """run_simulation.py in a subprocess (its output goes to files, never a pipe kept open by TFF workers)."""
    log = args[args.index("--output-dir") + 1] + ".log"
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_simulation.py"), *args],
                            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).returncode
    with open(log) as f:
        return rc, f.read()


def final_weights(out):
    with np.load(os.path.join(out, "checkpoint.npz")) as z:
        return [z[k] for k in sorted(z.files) if k.startswith("w")]


def test_two_workers_give_the_single_machine_result(tmp_path, workers):
    ports, _ = workers
    addrs = ",".join(f"127.0.0.1:{p}" for p in ports)
    # Two clients per round, so each worker trains one. FedAvg's aggregate is sum(n_i * w_i) / sum(n_i): with
    # two addends every summation order gives the same float32 bits (IEEE addition is commutative, and
    # 0 + x = x), on one machine (whatever order its clients finish in) and across two workers (one partial
    # sum each, merged by one addition). With 3+ clients the order differed with the load (once 2.2e-5 after
    # 3 rounds, Adam amplifying the rounding), so no tolerance could be derived; here none is needed.
    two = ["--clients-per-round", "2"]
    rc, log = simulate(COMMON + two + ["--workers", addrs, "--output-dir", str(tmp_path / "remote")])
    assert rc == 0, log
    rc, log = simulate(COMMON + two + ["--output-dir", str(tmp_path / "local")])
    assert rc == 0, log
    remote = [json.loads(x) for x in open(tmp_path / "remote" / "metrics.jsonl")]
    local = [json.loads(x) for x in open(tmp_path / "local" / "metrics.jsonl")]
    assert [r["prune"]["action"] for r in remote] == [r["prune"]["action"] for r in local] == \
        ["skipped", "accepted", "accepted"]
    assert [r["widths"] for r in remote] == [r["widths"] for r in local]
    assert [r["clients"] for r in remote] == [r["clients"] for r in local]
    assert all(len(r["clients"]) == 2 for r in remote)
    # Same seeds, clients, datasets and summation results: the same weights, bit for bit.
    for a, b in zip(final_weights(tmp_path / "remote"), final_weights(tmp_path / "local")):
        np.testing.assert_array_equal(a, b)


def run_until_round_one_then(sig, tmp_path, workers):
    """Starts a 3-round run on both workers; after round 1 lands, sends ``sig`` to the second worker."""
    ports, procs = workers
    addrs = ",".join(f"127.0.0.1:{p}" for p in ports)
    out = str(tmp_path / "run")
    args = COMMON + ["--workers", addrs, "--round-timeout", "30", "--output-dir", out]
    log_path = out + ".log"
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "run_simulation.py"), *args],
                           stdout=open(log_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 1:
            break
        time.sleep(0.2)
    procs[ports[1]].send_signal(sig)
    signalled_at = time.monotonic()
    rc = run.wait(timeout=200)
    elapsed = time.monotonic() - signalled_at
    return rc, elapsed, open(log_path).read(), out, addrs, metrics


def test_dead_worker_is_named_within_the_deadline_and_resume_continues(tmp_path, workers):
    ports, procs = workers
    rc, elapsed, log, out, addrs, metrics = run_until_round_one_then(signal.SIGKILL, tmp_path, workers)
    assert rc == 4, log
    assert elapsed < 30 + 60, f"the error took {elapsed:.0f} s"
    assert f"127.0.0.1:{ports[1]}" in log and "round 2" in log and "--resume" in log
    assert "TFF retries a worker call" in log
    done = [json.loads(x)["round"] for x in open(metrics)]
    assert done == [1]
    # Restart the worker on the same port and continue.
    procs[ports[1]] = start_worker(ports[1])
    rc, log = simulate(COMMON + ["--workers", addrs, "--output-dir", out, "--resume"])
    assert rc == 0, log
    assert [json.loads(x)["round"] for x in open(metrics)] == [1, 2, 3]


def test_frozen_worker_is_named_within_the_deadline(tmp_path, workers):
    ports, procs = workers
    try:
        rc, elapsed, log, *_ = run_until_round_one_then(signal.SIGSTOP, tmp_path, workers)
    finally:
        procs[ports[1]].send_signal(signal.SIGCONT)
    assert rc == 4, log
    assert elapsed < 30 + 60, f"the error took {elapsed:.0f} s"
    assert "round 2" in log and "no result within --round-timeout 30 s" in log and f"127.0.0.1:{ports[1]}" in log
    assert f"127.0.0.1:{ports[0]}" not in log.split("still waiting on worker(s)")[1].split("(")[0]


def test_worker_down_at_start_is_named(tmp_path):
    port = portpicker.pick_unused_port()
    t0 = time.monotonic()
    rc, log = simulate(COMMON + ["--workers", f"127.0.0.1:{port}", "--round-timeout", "5",
                                 "--output-dir", str(tmp_path / "x")])
    assert rc == 4 and time.monotonic() - t0 < 120
    assert f"worker 127.0.0.1:{port} is not reachable" in log and "tff-prune-worker --port" in log


@pytest.mark.parametrize("spec, message", [
    ("localhost", "not host:port"), ("a:1,a:1", "listed twice"), ("h:0", "not host:port"), ("", "not host:port"),
])
def test_bad_workers_flag(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_workers(spec)
    with pytest.raises(ConfigError, match="--workers"):
        ExperimentConfig(workers=spec)


def test_run_worker_prints_tffs_own_binary():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_worker.py"), "--port", "8123",
                          "--print-command"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.strip().endswith("tensorflow_federated/data/worker_binary --port=8123 "
                                       "--max_concurrent_computation_calls=-1")


def test_balanced_order_evens_the_contiguous_shares():
    from tff_prune.federated.distributed import balanced_order

    sizes = [300, 10, 20, 250, 40, 5, 100, 90, 80, 70]
    items = list(range(10))
    order = balanced_order(items, sizes, 2)
    assert sorted(order) == items
    first, second = sum(sizes[i] for i in order[:5]), sum(sizes[i] for i in order[5:])
    assert abs(first - second) <= 40  # contiguous halves of the original order: 620 vs 345
    assert balanced_order(items, sizes, 1) == items
