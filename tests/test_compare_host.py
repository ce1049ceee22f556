"""compare_runs.py (checked claims, interleaved latency, one chart) and benchmark_host.py (keyed by run,
validated files), on committed run summaries and real TFLite models."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mobile import convert, host_benchmark
from tff_prune.models import get_model
from tff_prune.pruning import prune_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "results", "femnist_inception_60r")  # finished runs with committed sidecars


@pytest.fixture(scope="module")
def tflites(tmp_path_factory):
    """float32 .tflite of the FEMNIST CNN and of a pruned copy (fewer filters)."""
    tmp = tmp_path_factory.mktemp("tfl")
    full = get_model("cnn", "femnist", seed=2)
    pruned = prune_model(full, {"conv1": np.arange(0, 32, 2), "conv2": np.arange(40)})
    out = {}
    for name, model in (("full", full), ("pruned", pruned)):
        out[name] = str(tmp / f"{name}.tflite")
        convert.convert_to_file(model, out[name])
    return out


def make_run(tmp_path, name, source, tflite=None, **config):
    """A run folder: a committed run's summary.json and metrics.jsonl (config edited), and a model.tflite."""
    run = tmp_path / name
    run.mkdir()
    summary = json.load(open(os.path.join(RUNS, source, "summary.json")))
    summary["config"].update(config)
    (run / "summary.json").write_text(json.dumps(summary))
    shutil.copy(os.path.join(RUNS, source, "metrics.jsonl"), run / "metrics.jsonl")
    if tflite:
        shutil.copy(tflite, run / "model.tflite")
    return str(run)


def test_compare_times_both_models_interleaved_and_draws_one_chart(tmp_path, tflites, data_dir, capsys):
    from tff_prune.cli import compare as compare_runs

    base = make_run(tmp_path, "fedavg", "fedavg", tflites["full"])
    pruned = make_run(tmp_path, "pruned", "inherit", tflites["pruned"])
    out = tmp_path / "cmp" / "comparison.md"
    assert compare_runs.main([base, pruned, "--output", str(out), "--repetitions", "4", "--runs", "5",
                              "--data-dir", data_dir]) == 0
    md = out.read_text()
    assert "Same seed (0), same sampled clients" in md and "Not like for like" not in md
    assert "## Latency, measured side by side" in md and "4 repetitions of 5 invokes each" in md
    row = [line for line in md.splitlines() if line.startswith("| float32 |")]
    assert len(row) == 1
    # run-end latencies are shown, never divided
    end = [line for line in md.splitlines() if line.startswith("| TFLite float32 latency at each run's end")][0]
    assert end.endswith("| not a ratio* |")
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "variants in only one run" not in md  # both runs have float32 only here


def test_compare_interleaved_structure(tflites, real_images):
    res = host_benchmark.compare_interleaved({"a": tflites["full"], "b": tflites["pruned"]}, inputs=real_images,
                                             repetitions=4, runs_per_repetition=3, warmup_runs=1)
    assert res["reference"] == "a" and list(res["ratios"]) == ["b"] and res["order"] == "alternating"
    per = res["ratios"]["b"]["per_repetition"]
    blocks_a, blocks_b = res["models"]["a"]["block_medians_us"], res["models"]["b"]["block_medians_us"]
    assert len(per) == 4 and len(blocks_a) == 4
    assert per == [b / a for a, b in zip(blocks_a, blocks_b)]
    assert res["ratios"]["b"]["median"] == float(np.median(per))
    assert res["ratios"]["b"]["min"] <= res["ratios"]["b"]["p25"] <= res["ratios"]["b"]["p75"] \
        <= res["ratios"]["b"]["max"]
    with pytest.raises(ValueError, match="repetitions must be >= 2"):
        host_benchmark.compare_interleaved({"a": tflites["full"], "b": tflites["pruned"]}, repetitions=1)


def test_compare_says_what_differs(tmp_path, capsys):
    from tff_prune.cli import compare as compare_runs

    base = make_run(tmp_path, "fedavg", "fedavg")
    pruned = make_run(tmp_path, "pruned", "inherit", rounds=30, client_lr=0.01)
    out = tmp_path / "c.md"
    assert compare_runs.main([base, pruned, "--output", str(out), "--no-latency"]) == 0
    md = out.read_text()
    assert "Same seed" not in md and "same sampled clients" not in md
    assert "**Not like for like.**" in md and "- rounds: 60 vs 30" in md and "- client_lr: 0.001 vs 0.01" in md
    assert "the runs differ besides pruning" in capsys.readouterr().err
    assert "Latency side by side: not measured: --no-latency" in md


def test_compare_refuses_a_pruned_baseline(tmp_path, capsys):
    from tff_prune.cli import compare as compare_runs

    base = make_run(tmp_path, "fedavg", "fedavg")
    pruned = make_run(tmp_path, "pruned", "inherit")
    with pytest.raises(SystemExit):
        compare_runs.main([pruned, base, "--no-latency", "--output", str(tmp_path / "x.md")])
    err = capsys.readouterr().err
    assert "the baseline run was pruned" in err and "pass the --no-prune (FedAvg) run first" in err
    assert not (tmp_path / "x.md").exists()


def test_compare_names_a_corrupt_summary(tmp_path, capsys):
    from tff_prune.cli import compare as compare_runs

    base = make_run(tmp_path, "fedavg", "fedavg")
    pruned = make_run(tmp_path, "pruned", "inherit")
    path = os.path.join(pruned, "summary.json")
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])
    with pytest.raises(SystemExit):
        compare_runs.main([base, pruned, "--no-latency"])
    err = capsys.readouterr().err
    assert f"{path} is corrupt, not JSON" in err and "Traceback" not in err


def test_compare_without_model_files_says_so(tmp_path):
    from tff_prune.cli import compare as compare_runs

    out = tmp_path / "c.md"
    assert compare_runs.main([make_run(tmp_path, "a", "fedavg"), make_run(tmp_path, "b", "inherit"),
                              "--output", str(out)]) == 0
    assert "not measured: no .tflite file is in both run folders" in out.read_text()


def test_unique_labels():
    assert host_benchmark.unique_labels(["runs/demo/fedavg/model.tflite", "runs/demo/pruned/model.tflite"]) == \
        ["fedavg/model.tflite", "pruned/model.tflite"]
    assert host_benchmark.unique_labels(["a/x.tflite", "b/y.tflite"]) == ["x.tflite", "y.tflite"]
    assert host_benchmark.unique_labels(["/r/m.tflite", "/r/m.tflite"]) == ["m.tflite", "m.tflite#2"]


def test_host_cli_keys_rows_by_run(tmp_path, tflites, data_dir, capsys):
    from mobile.cli import benchmark_host

    paths = []
    for run, name in (("fedavg", "full"), ("pruned", "pruned")):
        (tmp_path / run).mkdir()
        paths.append(str(tmp_path / run / "model.tflite"))
        shutil.copy(tflites[name], paths[-1])
    assert benchmark_host.main(paths + ["--num-runs", "5", "--warmup-runs", "1", "--data-dir", data_dir,
                                        "--output-dir", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "| fedavg/model.tflite |" in text and "| pruned/model.tflite |" in text
    saved = json.loads((tmp_path / "out" / "host_benchmark.json").read_text())
    assert [r["label"] for r in saved["results"]] == ["fedavg/model.tflite", "pruned/model.tflite"]


def run_host_cli(args, tmp_path):
    """benchmark_host.py in its own process (a crash must show as a crash), output in a file."""
    log = tmp_path / "host.log"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark_host.py")] + args,
                              stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300, cwd=ROOT)
    return proc.returncode, log.read_text()


def test_truncated_model_is_an_error_not_a_crash(tmp_path, tflites):
    cut = tmp_path / "model.tflite"
    cut.write_bytes(open(tflites["full"], "rb").read()[:100000])  # head -c 100000
    code, log = run_host_cli([str(cut), "--no-data", "--num-runs", "1", "--output-dir", str(tmp_path / "o")],
                             tmp_path)
    assert code == 2, log
    assert f"{cut} (100,000 bytes) is truncated or corrupt" in log and "copy the whole file again" in log
    with pytest.raises(host_benchmark.BenchmarkError, match="no 'TFL3' identifier"):
        host_benchmark.check_tflite(b"\x00" * 64)


def test_dynamic_input_tflite_is_refused(tmp_path, capsys):
    import tensorflow as tf

    from mobile.cli import benchmark_host

    inp = tf.keras.Input((None, None, 1))
    model = tf.keras.Model(inp, tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(2, 3)(inp)))
    path = tmp_path / "dyn.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert benchmark_host.main([str(path), "--no-data", "--output-dir", str(tmp_path / "o")]) == 2
    assert "has a dynamic input shape [-1, -1, -1, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
