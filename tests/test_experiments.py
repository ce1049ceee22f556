"""tff_prune.experiments.run_one: one experiment run in this process, its output in run.log, resumable."""

import dataclasses
import json
import os

import pytest

from tff_prune import experiments

pytestmark = pytest.mark.integration


def _tiny(name="femnist_cnn"):
    """The experiment with 2 clients per round (its other settings, e.g. 5 local epochs, kept)."""
    return dataclasses.replace(experiments.EXPERIMENTS[name], clients_per_round=2)


def test_a_run_goes_to_its_folder_with_its_log_and_is_skipped_once_done(tmp_path, data_dir, capfd):
    exp, results = _tiny(), str(tmp_path / "results")
    assert experiments.run_one(exp, "femnist_cnn", "fedavg", results, seed=0, rounds=2, data_dir=data_dir) == "done"
    out = tmp_path / "results" / "femnist_cnn" / "fedavg"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["config"]["clients_per_round"] == 2
    assert summary["config"]["prune"] is False and summary["final_params"] == summary["initial_params"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "model.tflite").stat().st_size > 0 and (out / "model_int8.tflite").stat().st_size > 0
    printed = capfd.readouterr()
    assert "femnist_cnn/fedavg:" in printed.out  # this process's stdout is back after the run
    assert "Unable to register" not in (out / "run.log").read_text()
    assert experiments.run_one(exp, "femnist_cnn", "fedavg", results, seed=0, rounds=2, data_dir=data_dir) \
        == "skipped"


def test_a_failed_run_names_its_log_and_leaves_stdout_working(tmp_path, capfd):
    results = str(tmp_path / "results")
    with pytest.raises(RuntimeError, match=r"femnist_cnn/fedavg failed \(DataError: .*\); see .*run\.log\. "
                                           r"Re-run this command to resume it\."):
        experiments.run_one(_tiny(), "femnist_cnn", "fedavg", results, seed=0, rounds=2,
                            data_dir=str(tmp_path / "no_data"))
    print("still here")
    assert "still here" in capfd.readouterr().out
    log = (tmp_path / "results" / "femnist_cnn" / "fedavg" / "run.log").read_text()
    assert "Traceback" in log and "DataError" in log


def test_the_magnitude_run_needs_inherit_first_and_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="needs the inherit run's final size; run --runs inherit first"):
        experiments.run_one(_tiny(), "femnist_cnn", "magnitude", str(tmp_path), seed=0, rounds=2, data_dir=None)
    assert os.listdir(tmp_path) == []
