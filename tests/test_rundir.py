"""The output folder (checks, lock, --overwrite), strict JSON, the SQLite cache check, run_worker's port check."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tff_prune import report
from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.federated import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("make, messages", [
    (lambda t: (t / "f").write_text("x") and t / "f", ["is a file, not a folder; choose another --output-dir"]),
    (lambda t: (t / "f").write_text("x") and t / "f" / "run", ["which is a file; choose another --output-dir"]),
    # read-only sysfs: root may pass the access check, then cannot create the folder
    (lambda t: "/sys/tff_prune_test/run", ["/sys is not writable; choose a writable --output-dir",
                                           "cannot create /sys/tff_prune_test/run (Operation not permitted)"]),
])
def test_unusable_output_dir_is_refused_before_any_work(make, messages, tmp_path, capsys):
    from tff_prune.cli import run as run_simulation

    out = str(make(tmp_path))
    try:
        code = run_simulation.main(["--output-dir", out, "--data-dir", str(tmp_path / "nodata")])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert any(f"error: --output-dir: " in err and m in err for m in messages), err
    assert "data not found" not in err  # refused before the data was looked for
    assert sorted(os.listdir(tmp_path)) == (["f"] if out.startswith(str(tmp_path)) else [])


def test_blank_output_dir_is_refused():
    for value in ("", "  "):
        with pytest.raises(ConfigError, match="--output-dir: must name a folder"):
            ExperimentConfig(output_dir=value)


def test_resume_mismatch_names_the_real_flag():
    now, saved = ExperimentConfig(prune=False), ExperimentConfig()
    assert now.resume_mismatches(saved) == ["--no-prune (checkpoint: not given, now: given)"]
    assert ExperimentConfig(k=1.0).resume_mismatches(saved) == ["--k (checkpoint: 2.2, now: 1.0)"]


HOLDER = ("import time; from tff_prune.federated import rundir\n"
          "with rundir.claim({out!r}):\n    print('held', flush=True); time.sleep(600)\n")


def test_a_second_process_is_refused_with_the_first_ones_pid_until_it_dies(tmp_path):
    out = str(tmp_path / "run")
    log = open(tmp_path / "holder.txt", "w")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=ROOT, out=out)], stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "held" not in (tmp_path / "holder.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(rundir.OutputDirBusy) as e:
            with rundir.claim(out):
                pass
        assert str(e.value) == (f"--output-dir: {out} is in use by another run (PID {holder.pid}); wait for it to "
                                f"finish, or stop it (kill {holder.pid}) and continue with --resume, or choose "
                                f"another --output-dir")
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        holder.wait()
        with rundir.claim(out) as path, rundir.claim(out):  # re-entrant in one process
            assert open(os.path.join(path, rundir.LOCK_FILE)).read() == f"{os.getpid()}\n"
        assert not os.path.exists(out + "/" + rundir.LOCK_FILE)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        log.close()


def test_a_claim_that_wrote_nothing_leaves_no_folder(tmp_path):
    out = tmp_path / "new"
    with rundir.claim(str(out)):
        assert out.is_dir()
    assert not out.exists()
    out.mkdir()
    with rundir.claim(str(out)):
        pass
    assert out.is_dir()  # it was there before


def test_clear_run_files_removes_only_what_a_run_writes(tmp_path):
    names = ["metrics.jsonl", "summary.json", "checkpoint.npz", "model.keras", "model.tflite", "model_int8.tflite",
             "model_int8.json", "labels.txt", "curves.png", ".summary.json.abc.tmp"]
    for n in names + ["notes.txt"]:
        (tmp_path / n).write_text("old")
    removed = rundir.clear_run_files(str(tmp_path))
    assert removed == sorted(str(tmp_path / n) for n in names)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_metrics_are_strict_json(tmp_path):
    path = str(tmp_path / "m.jsonl")
    report.append_metrics(path, {"round": 1, "eval_loss": float("nan"), "x": [float("inf"), 1.5]})
    report.write_json(str(tmp_path / "s.json"), {"a": float("-inf")})
    text = open(path).read()
    assert text == '{"round": 1, "eval_loss": null, "x": [null, 1.5]}\n'
    refuse = {"parse_constant": lambda token: pytest.fail(f"non-JSON token {token}")}
    assert json.loads(text, **refuse)["eval_loss"] is None
    assert json.loads((tmp_path / "s.json").read_text(), **refuse) == {"a": None}


def _small_db(path):
    from tff_prune.data.client_data import write_sqlite

    write_sqlite(str(path), [("train", "c1", [b"p1", b"p2"]), ("test", "c1", [b"p3"])])


def test_sqlite_cache_check_names_the_damage(tmp_path):
    from tff_prune.data.client_data import sqlite_problem

    good = tmp_path / "good.sqlite"
    _small_db(good)
    assert sqlite_problem(str(good)) is None
    data = good.read_bytes()
    (tmp_path / "empty.sqlite").write_bytes(b"")
    (tmp_path / "cut.sqlite").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.sqlite").write_bytes(b"not a database" * 100)
    con = sqlite3.connect(tmp_path / "other.sqlite")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    assert sqlite_problem(str(tmp_path / "empty.sqlite")) == "empty (0 bytes)"
    assert sqlite_problem(str(tmp_path / "cut.sqlite")).startswith(f"truncated or padded ({len(data) // 2} bytes")
    assert sqlite_problem(str(tmp_path / "text.sqlite")) == "not an SQLite database (bad header)"
    assert sqlite_problem(str(tmp_path / "other.sqlite")) == "missing tables ['client_metadata', 'examples']"


def test_damaged_cache_is_rebuilt_and_said_so(tmp_path, caplog):
    from tff_prune.data.client_data import DataError, ensure_sqlite, sqlite_problem

    db = tmp_path / "c.sqlite"
    db.write_bytes(b"")
    ensure_sqlite(str(db), lambda: _small_db(db), "FEMNIST")
    assert sqlite_problem(str(db)) is None
    assert f"FEMNIST cache {db} is empty (0 bytes); rebuilding it from the packed data" in caplog.text
    db.write_bytes(b"")
    with pytest.raises(DataError, match=r"is empty \(0 bytes\) right after it was built; check the disk"):
        ensure_sqlite(str(db), lambda: db.write_bytes(b""), "FEMNIST")  # a full disk, say


def test_final_rounding_names_groups_below_round_to():
    from tff_prune import accounting, pruning
    from tff_prune.federated.steps.structured import note_unrounded
    from tff_prune.models import get_model

    model = get_model("cnn", "femnist", seed=0)
    small = pruning.prune_model(model, pruning.plan(model, pruning.ratio(0.05)))  # widths 31, 61
    plan = pruning.plan(small, pruning.ratio(0.0), round_to=128, round_mode="down")
    ctl = pruning.PruningController(max_prune_round=1, patience=1)
    ctl.state.stopped = True
    before, after = accounting.conv_widths(small), accounting.conv_widths(pruning.prune_model(small, plan))
    p = accounting.count_params(small)
    decision = note_unrounded(ctl.final_rounding(5, p, p, before, after, round_to=128), plan, 128)
    assert decision.reason == (f"final rounding to multiples of 128: no group changed; conv1 ({before['conv1']}), "
                               f"conv2 ({before['conv2']}) not rounded: fewer than 128 channels, kept as they are")


def test_run_worker_refuses_a_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_worker.py"), "--port", str(port)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert f"--port: {port} is already in use (Address already in use); another worker may be running there" \
        in out.stderr
