"""The command-line tools end to end: run_simulation.py outputs, compare_runs.py, and error paths."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tflite_runtime.interpreter import Interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_simulation.py")
COMPARE = os.path.join(ROOT, "scripts", "compare_runs.py")
QUICK = ["--rounds", "2", "--clients-per-round", "3", "--local-epochs", "1", "--max-clients", "12",
         "--k", "1.0", "--schedule", "paper", "--latency-runs", "20", "--tflite-variants", "int8", "--quiet"]


def run_cli(args, tmp_path, name="log"):
    """Runs a script with stdout/stderr in a file (never a pipe: TFF workers could hold it open)."""
    log = tmp_path / f"{name}.txt"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable] + args, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=600)
    return proc.returncode, log.read_text()


def worker_binary_pids():
    """Live worker_binary processes of this environment's TFF (other checkouts on a shared machine run their own)."""
    import importlib.util

    tff_dir = os.path.dirname(importlib.util.find_spec("tensorflow_federated").origin).encode()
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if cmd.startswith(tff_dir) and b"worker_binary" in cmd:  # a zombie has an empty cmdline
                out.append(int(p))
    return out


@pytest.mark.integration
def test_pruned_and_baseline_runs_write_every_output(tmp_path, real_images):
    before = set(worker_binary_pids())
    pruned_dir, base_dir = tmp_path / "pruned", tmp_path / "fedavg"
    rc, log = run_cli([SCRIPT] + QUICK + ["--output-dir", str(pruned_dir)], tmp_path, "pruned")
    assert rc == 0, log
    rc, log_b = run_cli([SCRIPT] + QUICK + ["--no-prune", "--output-dir", str(base_dir)], tmp_path, "base")
    assert rc == 0, log_b
    assert set(worker_binary_pids()) <= before  # no TFF worker_binary left running
    assert "Unable to register" not in log and "Unable to register" not in log_b  # TF 2.14's CUDA noise

    lines = (pruned_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["round"] for r in recs] == [1, 2]
    for key in ("round", "wall_seconds", "train_loss", "train_accuracy", "eval_accuracy", "params", "flops",
                "widths", "bytes_down", "bytes_up", "cumulative_bytes", "prune"):
        assert key in recs[1], key
    assert recs[1]["prune"]["action"] == "accepted"
    summary = json.loads((pruned_dir / "summary.json").read_text())
    for key in ("initial_params", "final_params", "initial_flops", "final_flops", "final_accuracy", "widths",
                "bytes_total", "rounds", "tflite_path", "tflite_bytes", "tflite_latency_us_median"):
        assert summary[key] is not None, key
    assert summary["initial_params"] == 56_126 and summary["final_params"] < 56_126
    assert summary["final_params"] == recs[-1]["params"] and summary["rounds"] == 2
    assert summary["bytes_total"] == recs[-1]["cumulative_bytes"]
    assert summary["tflite_bytes"] == os.path.getsize(summary["tflite_path"])
    assert summary["tflite_latency_us_median"] > 0 and summary["tflite_latency"]["num_runs"] == 20
    assert "prunes at rounds    : [2]" in log and "int8" in log
    variants = summary["tflite_variants"]
    assert set(variants) == {"float32", "int8"}  # QUICK asks for int8; float32 is always written
    assert variants["float32"]["path"] == summary["tflite_path"]
    assert os.path.isfile(pruned_dir / "model_int8.tflite") and os.path.isfile(pruned_dir / "model_int8.json")
    assert (pruned_dir / "labels.txt").read_text().splitlines()[10] == "A"
    assert not variants["float32"]["flagged"] and variants["float32"]["max_abs_diff"] <= 1e-5
    assert variants["int8"]["size_bytes"] < variants["float32"]["size_bytes"]

    keras_model = tf.keras.models.load_model(pruned_dir / "model.keras")
    assert keras_model.count_params() == summary["final_params"]
    interp = Interpreter(model_path=str(pruned_dir / "model.tflite"))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], real_images[:1])
    interp.invoke()
    np.testing.assert_allclose(interp.get_tensor(out["index"]), keras_model(real_images[:1]).numpy(), atol=1e-5)
    assert (pruned_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rc, text = run_cli([COMPARE, str(base_dir), str(pruned_dir), "--output", str(tmp_path / "comparison.md")],
                       tmp_path, "compare")
    assert rc == 0, text
    md = (tmp_path / "comparison.md").read_text()
    assert "| parameters | 56,126 |" in md and f"{summary['final_params']:,}" in md
    assert "TFLite float32 size" in md and "pruned / baseline" in md and "TFLite int8 size" in md


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k: must be > 0"),
    (["--k", "-2"], "--k: must be > 0"),
    (["--rounds", "0"], "--rounds: must be an integer >= 1"),
    (["--clients-per-round", "0"], "--clients-per-round: must be an integer >= 1"),
    (["--weights", "random"], "--weights"),
    (["--dataset", "cifar"], "--dataset: unknown dataset"),
    (["--tflite-variants", "int4"], "--tflite-variants: unknown TFLite variant"),
    (["--model", "vgg"], "--model: unknown model 'vgg'; choose one of cnn, resnet, inception"),
    (["--criterion", "l2"], "--criterion: unknown criterion 'l2'; choose one of band, band_low, ratio"),
    (["--criterion", "ratio", "--prune-ratio", "1"], "--prune-ratio: must be in [0, 1)"),
    (["--round-to", "0"], "--round-to: must be an integer >= 1"),
    (["--min-channels", "0"], "--min-channels: must be an integer >= 1"),
    (["--dataset", "celeba", "--celeba-attribute", "beard"], "--celeba-attribute: unknown CelebA attribute"),
    (["--schedule", "greedy"], "--schedule: unknown schedule 'greedy'; choose one of auto, paper"),
    (["--max-accuracy-loss", "1"], "--max-accuracy-loss: must be in [0, 1)"),
    (["--step-fraction", "0"], "--step-fraction: must be in (0, 1)"),
    (["--val-clients", "0"], "--val-clients: must be an integer >= 1"),
    (["--recovery-rounds", "0"], "--recovery-rounds: must be an integer >= 1"),
    (["--weights", "reinit"], "--weights: reinit is the paper's architecture search; it needs --schedule paper"),
    (["--client-optimizer", "rmsprop"],
     "--client-optimizer: unknown client optimizer 'rmsprop'; choose one of adam, sgd"),
    (["--client-lr", "inf"], "--client-lr: must be a finite number, got inf"),
    (["--k", "inf"], "--k: must be a finite number, got inf"),
    (["--server-lr", "nan"], "--server-lr: must be a finite number, got nan"),
    (["--round-timeout", "inf"], "--round-timeout: must be a finite number, got inf"),
])
def test_bad_flags_are_rejected_before_any_work(args, message, tmp_path, capsys):
    from tff_prune.cli import run as run_simulation

    with pytest.raises(SystemExit) as e:
        run_simulation.main(args + ["--output-dir", str(tmp_path / "x")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written


def test_more_clients_than_exist(tmp_path, capsys, data_dir):
    from tff_prune.cli import run as run_simulation

    code = run_simulation.main(["--clients-per-round", "301", "--data-dir", data_dir,
                                "--output-dir", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--clients-per-round: 301 requested but the femnist data has only 300 clients" in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_missing_data_dir_says_where_it_looked(tmp_path, capsys):
    from tff_prune.cli import run as run_simulation

    code = run_simulation.main(["--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path / "nowhere" / "femnist_leaf_300w.npz") in err and "--data-dir" in err


def test_data_dir_from_environment(tmp_path, capsys, monkeypatch):
    from tff_prune.cli import run as run_simulation

    monkeypatch.setenv("TFF_PRUNE_DATA_DIR", str(tmp_path / "envdir"))
    code = run_simulation.main(["--output-dir", str(tmp_path / "x")])
    assert code == 2 and str(tmp_path / "envdir") in capsys.readouterr().err


def test_resume_without_checkpoint(tmp_path, capsys, data_dir):
    from tff_prune.cli import run as run_simulation

    code = run_simulation.main(["--resume", "--data-dir", data_dir, "--output-dir", str(tmp_path / "x"),
                                "--quiet"])
    assert code == 2 and "no checkpoint" in capsys.readouterr().err


def test_compare_needs_summaries(tmp_path, capsys):
    from tff_prune.cli import compare as compare_runs

    with pytest.raises(SystemExit):
        compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert "no summary.json" in capsys.readouterr().err
