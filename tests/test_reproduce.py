"""scripts/reproduce.py settings and scripts/make_results.py rendering (from the committed trial results)."""

import json
import os

import pytest

from scripts import make_results, reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_runs_share_seed_and_clients_and_differ_only_in_pruning():
    exp = reproduce.EXPERIMENTS["celeba_resnet"]
    args = {run: reproduce.run_args(exp, run, "/tmp/x", seed=3, rounds=None) for run in reproduce.RUNS}
    common = [a for a in args["fedavg"] if a != "--no-prune"]
    for run, flags in args.items():
        assert flags[:len(common)] == common
    assert args["reinit"][-2:] == ["--weights", "reinit"] and args["inherit_round8"][-2:] == ["--round-to", "8"]
    assert "--k" in common and common[common.index("--k") + 1] == "2.0"
    assert common[common.index("--local-epochs") + 1] == "5" and common[common.index("--batch-size") + 1] == "32"


def test_a_shorter_trial_keeps_the_papers_prune_window_share():
    exp = reproduce.EXPERIMENTS["femnist_cnn"]  # 10 of 100 rounds
    assert reproduce.prune_window(exp, None) == 10
    assert reproduce.prune_window(exp, 20) == 2 and reproduce.prune_window(exp, 5) == 1


def test_bad_experiment_name(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--experiment", "mnist"])
    assert "unknown 'mnist'" in capsys.readouterr().err


def test_results_markdown_is_generated_from_the_json(tmp_path):
    results = os.path.join(ROOT, "results")
    if not os.path.isdir(os.path.join(results, "femnist_cnn")):
        pytest.skip("no committed results")
    text = make_results.render(results, str(tmp_path / "RESULTS.md"))
    assert (tmp_path / "results" / "femnist_cnn.png").stat().st_size > 0
    for run in ("fedavg", "reinit", "inherit", "inherit_round8"):
        with open(os.path.join(results, "femnist_cnn", run, "summary.json")) as f:
            s = json.load(f)
        row = next(line for line in text.splitlines() if line.startswith(f"| {run} |"))
        assert f"{s['final_params']:,}" in row and f"{100 * s['final_accuracy']:.2f}%" in row
    assert "74.78% → 71.55%" in text  # the authors' numbers beside ours
