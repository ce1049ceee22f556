"""Faults on real runs: divergence, a second process on the same folder, kill -9, a kill during the export,
--overwrite over a finished run, damaged or missing run files. Real TFF on real FEMNIST writers, 1-3 rounds."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.federated import checkpoint, loop
from tff_prune.federated.checkpoint import CheckpointError
from tff_prune.federated.steps import DivergenceError
from tff_prune.report import read_metrics

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_simulation.py")
QUICK = ["--rounds", "2", "--clients-per-round", "3", "--local-epochs", "1", "--max-clients", "12", "--seed", "0",
         "--k", "1.0", "--schedule", "paper", "--latency-runs", "20", "--tflite-variants", "int8", "--quiet"]


def make_config(tmp_path, name, **kw):
    base = dict(rounds=1, clients_per_round=3, local_epochs=1, k=1.0, max_clients=20, seed=4,
                output_dir=str(tmp_path / name), latency_runs=10, schedule="paper")
    base.update(kw)
    return ExperimentConfig(**base)


def children_named(pid, name=b"worker_binary"):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read()
            except (OSError, ValueError):
                continue
            if ppid == pid and name in cmd:
                out.append(int(p))
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_divergence_stops_in_its_round_and_keeps_the_last_finite_checkpoint(tmp_path, femnist):
    # SGD at 1e30: round 1's aggregate is huge but finite (not evaluated: --eval-every 2); round 2 gives NaN.
    cfg = make_config(tmp_path, "div", rounds=3, eval_every=2, prune=False, client_optimizer="sgd", client_lr=1e30,
                      max_clients=12, seed=0)
    with pytest.raises(DivergenceError) as e:
        loop.run(cfg, data=dataclasses.replace(femnist, client_ids=femnist.client_ids[:12]), progress=False)
    assert (e.value.round, e.value.what) == (2, "eval_loss")
    assert str(e.value) == (
        "round 2: training diverged: the global model's eval_loss on the test data is nan. Start again with a "
        "smaller --client-lr (now 1e+30) or --server-lr (now 1), with --overwrite or another --output-dir; the "
        f"checkpoint of round 1, the last finite one, stays in {cfg.output_dir}/checkpoint.npz")
    ck = checkpoint.load(cfg.output_dir)
    assert ck.round == 1 and all(np.isfinite(w).all() for w in ck.weights)
    assert [r["round"] for r in read_metrics(os.path.join(cfg.output_dir, "metrics.jsonl"))] == [1]


def test_output_folder_states_and_their_messages(tmp_path, femnist):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")  # a run that failed before round 1
    cfg = make_config(tmp_path, "run")
    with pytest.raises(CheckpointError, match="no checkpoint at .*; run without --resume to start a new run"):
        loop.run(cfg, data=femnist, resume=True, progress=False)
    loop.run(cfg, data=femnist, progress=False)  # ... which works: an empty metrics.jsonl is no run
    assert [r["round"] for r in read_metrics(str(out / "metrics.jsonl"))] == [1]

    with pytest.raises(ConfigError) as e:
        loop.run(make_config(tmp_path, "run", rounds=2, prune=False), data=femnist, resume=True, progress=False)
    assert str(e.value) == ("--resume: flags differ from the checkpointed run: --no-prune (checkpoint: not given, "
                            "now: given). Resume with the original flags (only --rounds may grow).")
    with pytest.raises(ConfigError, match="--overwrite: cannot be combined with --resume"):
        loop.run(cfg, data=femnist, resume=True, overwrite=True, progress=False)
    # Stopped after its last round's checkpoint, before the export: --resume trains nothing and returns the run.
    res = loop.run(cfg, data=femnist, resume=True, progress=False)
    assert [r["round"] for r in res.records] == [1] and res.final["params"] == res.records[0]["params"]
    (out / "summary.json").write_text('{"rounds": 1}')  # as the export writes it last
    with pytest.raises(ConfigError) as e:
        loop.run(cfg, data=femnist, resume=True, progress=False)
    assert str(e.value) == ("--rounds: the run already finished round 1 and its export (summary.json); pass "
                            "--rounds > 1 to continue training")

    # metrics.jsonl lost: the checkpoint cannot rebuild the rounds' records, so --resume refuses.
    os.rename(out / "metrics.jsonl", out / "metrics.bak")
    with pytest.raises(CheckpointError) as e:
        loop.run(make_config(tmp_path, "run", rounds=2), data=femnist, resume=True, progress=False)
    assert str(e.value) == (f"--resume: {out}/metrics.jsonl records rounds none but the checkpoint finished round 1; "
                            f"the checkpoint keeps only the last round's state, so the missing records cannot be "
                            f"rebuilt. Restore metrics.jsonl from a copy, or start again with --overwrite")
    os.rename(out / "metrics.bak", out / "metrics.jsonl")

    # A corrupt checkpoint: the message's fix (--overwrite) works as written.
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(CheckpointError, match=r"is corrupt .*; start the run again with --overwrite \(its finished "
                                              r"rounds are discarded\)"):
        loop.run(make_config(tmp_path, "run", rounds=2), data=femnist, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        loop.run(cfg, data=femnist, progress=False)

    # --overwrite over a finished run: the earlier run's files go before anything is written; others stay.
    for name in ("summary.json", "model.tflite", "model_int8.json", "curves.png"):
        (out / name).write_text("earlier run")
    (out / "notes.txt").write_text("mine")
    loop.run(cfg, data=femnist, overwrite=True, progress=False)
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl", "notes.txt"]
    assert checkpoint.load(str(out)).round == 1


def run_cli(args, log_path):
    with open(log_path, "w") as f:
        proc = subprocess.run([sys.executable, SCRIPT] + args, stdout=f, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=600)
    return proc.returncode, open(log_path).read()


def test_cli_divergence_exits_5_naming_round_and_tensor(tmp_path, capfd):  # fd level: TFF starts a worker
    from tff_prune.cli import run as run_simulation

    out = tmp_path / "div"
    code = run_simulation.main(QUICK + ["--client-optimizer", "sgd", "--client-lr", "1e30", "--rounds", "3",
                                        "--output-dir", str(out)])
    err = capfd.readouterr().err
    assert code == 5, err
    assert err.endswith(
        ": error: round 1: training diverged: the global model's eval_loss on the test data is "
        "nan. Start again with a smaller --client-lr (now 1e+30) or --server-lr (now 1), with --overwrite or "
        "another --output-dir; no round finished, so there is no checkpoint\n")
    assert not out.exists()  # nothing was written: no metrics, no checkpoint, no summary, no TFLite


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_second_process_refused_kill9_in_export_leaves_no_worker_and_resume_exports(tmp_path):
    out = tmp_path / "run"
    args = QUICK + ["--output-dir", str(out)]  # 2 rounds, int8 variant: an export of several seconds
    first = subprocess.Popen([sys.executable, SCRIPT] + args, stdout=open(tmp_path / "first.txt", "w"),
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: first.poll() is not None or len(read_metrics(str(out / "metrics.jsonl"))) >= 1, 400,
                 "round 1")
        assert first.poll() is None, (tmp_path / "first.txt").read_text()
        workers = children_named(first.pid)
        assert len(workers) == 1  # TFF's local worker_binary

        # A second --resume of the running run is refused, naming the first one's PID.
        rc, log = run_cli(args + ["--resume"], tmp_path / "second.txt")
        assert rc == 6, log
        assert log == (f"run_simulation.py: error: --output-dir: {out} is in use by another run (PID {first.pid}); "
                       f"wait for it to finish, or stop it (kill {first.pid}) and continue with --resume, or choose "
                       f"another --output-dir\n")

        # kill -9 of the driver once its export has begun (model.keras is the export's first file).
        wait_for(lambda: first.poll() is not None or (out / "model.keras").exists(), 400, "the export")
        first.send_signal(signal.SIGKILL)
        first.wait()
        # ... its watcher ends TFF's worker_binary
        wait_for(lambda: not alive(workers[0]), 10, "worker_binary to end with its driver")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (out / "summary.json").exists(), (tmp_path / "first.txt").read_text()
    assert checkpoint.load(str(out)).round == 2

    rc, log = run_cli(args + ["--resume"], tmp_path / "export.txt")
    assert rc == 0, log
    assert "--resume: round 2 was the last; finishing the export" in log
    recs = read_metrics(str(out / "metrics.jsonl"))
    assert [r["round"] for r in recs] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["prune_rounds"] == [2] and recs[1]["prune"]["action"] == "accepted"
    assert summary["final_params"] == recs[1]["params"]
    assert not os.path.exists(out / ".tff_prune.lock")
