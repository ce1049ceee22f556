"""tff_prune.experiments settings and tff_prune.results_doc rendering (from the committed trial results)."""

import json
import shutil
import os

import pytest

from tff_prune import experiments as reproduce
from tff_prune import results_doc as make_results
from tff_prune.cli import reproduce as reproduce_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_runs_share_seed_and_clients_and_differ_only_in_pruning():
    exp = reproduce.EXPERIMENTS["celeba_resnet"]
    args = {run: reproduce.run_args(exp, run, "/tmp/x", seed=3, rounds=None, target_sparsity=0.7)
            for run in {**reproduce.RUNS, **reproduce.EXTRA_RUNS}}
    common = [a for a in args["fedavg"] if a != "--no-prune"]
    variants = common.index("--tflite-variants") + 1
    for run, flags in args.items():
        assert flags[:variants] + flags[variants + 1:len(common)] == common[:variants] + common[variants + 1:]
    assert args["reinit"][-2:] == ["--weights", "reinit"]
    assert args["inherit_round8"][-4:] == ["--round-to", "8", "--round-mode", "final"]
    assert args["inherit_low"][-4:] == ["--weights", "inherit", "--criterion", "band_low"]
    assert args["magnitude"][-4:] == ["--method", "magnitude", "--target-sparsity", "0.700000"]
    assert args["default_loss2"][-2:] == ["--max-accuracy-loss", "0.02"] and args["default"][-1] == "--quiet"
    assert args["magnitude"][variants] == "float32,int8,sparse" and args["fedavg"][variants] == "float32,int8"
    assert "--k" in common and common[common.index("--k") + 1] == "2.0"
    assert common[common.index("--local-epochs") + 1] == "5" and common[common.index("--batch-size") + 1] == "32"
    # CelebA: the paper's Adam with a server-held state (shared_adam), the paper's label, every 5th round evaluated
    assert common[common.index("--client-optimizer") + 1] == "shared_adam"
    assert common[common.index("--client-lr") + 1] == "0.001"
    assert common[common.index("--celeba-attribute") + 1] == "male" and common[common.index("--eval-every") + 1] == "5"
    leaf = reproduce.run_args(reproduce.EXPERIMENTS["celeba_cnn_smiling"], "fedavg", "/tmp/x", 0, None)
    assert leaf[leaf.index("--celeba-attribute") + 1] == "smiling"
    assert leaf[leaf.index("--client-optimizer") + 1] == "adam"
    assert "--celeba-attribute" not in reproduce.run_args(reproduce.EXPERIMENTS["femnist_cnn"], "fedavg", "/x", 0, None)
    with pytest.raises(ValueError, match="needs target_sparsity"):
        reproduce.run_args(exp, "magnitude", "/tmp/x", seed=3, rounds=None)


def test_magnitude_run_matches_the_inherit_runs_size(tmp_path):
    exp = reproduce.EXPERIMENTS["femnist_cnn"]
    with pytest.raises(RuntimeError, match="run --runs inherit first"):
        reproduce.magnitude_sparsity(exp, str(tmp_path), "femnist_cnn")
    (tmp_path / "femnist_cnn" / "inherit").mkdir(parents=True)
    (tmp_path / "femnist_cnn" / "inherit" / "summary.json").write_text(json.dumps({"final_params": 21_488}))
    s = reproduce.magnitude_sparsity(exp, str(tmp_path), "femnist_cnn")
    assert s == pytest.approx((56_126 - 21_488) / (25 * 32 + 25 * 32 * 64 + 64 * 62))  # conv + Dense kernels


def test_a_shorter_trial_keeps_the_papers_prune_window_share():
    exp = reproduce.EXPERIMENTS["femnist_cnn"]  # the paper's 50 of 500 rounds
    assert reproduce.prune_window(exp, None) == 50
    assert reproduce.prune_window(exp, 20) == 2 and reproduce.prune_window(exp, 5) == 1


def test_bad_experiment_name(capsys):
    with pytest.raises(SystemExit):
        reproduce_cli.main(["--experiment", "mnist"])
    assert "unknown 'mnist'" in capsys.readouterr().err


def test_bad_run_name_is_named_before_any_work(capsys, tmp_path):
    with pytest.raises(SystemExit):
        reproduce_cli.main(["--experiment", "femnist_cnn", "--runs", "fedavg,default_los2",
                            "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--runs: unknown default_los2; choose from" in err and "default_loss2" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_results_markdown_is_generated_from_the_json(tmp_path):
    NAME = "femnist_cnn_100r"  # the complete 100-round protocol
    results = os.path.join(ROOT, "results")
    runs = [r for r in make_results.RUN_ORDER
            if os.path.isfile(os.path.join(results, NAME, r, "summary.json"))]
    if not runs:
        pytest.skip("no committed results")
    discussion = os.path.join(ROOT, "docs", make_results.DISCUSSION)
    shutil.copy(discussion, tmp_path / make_results.DISCUSSION)  # appended from beside the output
    full = make_results.render(results, str(tmp_path / "RESULTS.md"))
    assert (tmp_path / "results" / f"{NAME}.png").stat().st_size > 0
    text = full.split(f"## {NAME}\n", 1)[1].split("\n## ", 1)[0]  # this experiment's section
    for run in set(make_results.RUN_ORDER) - set(runs):
        assert (f"| {run} | not run yet |" in text) == (run not in make_results.OPTIONAL_RUNS)
        assert (f"| {run} |" in text) == (run not in make_results.OPTIONAL_RUNS)
    with open(discussion) as f:
        assert full.endswith(f.read())
    for run in runs:
        with open(os.path.join(results, NAME, run, "summary.json")) as f:
            s = json.load(f)
        row = next(line for line in text.splitlines() if line.startswith(f"| {run} |"))
        assert f"{s['final_params']:,}" in row and f"{100 * s['final_accuracy']:.2f}%" in row
        with open(os.path.join(results, NAME, run, "metrics.jsonl")) as f:
            acc = [r["eval_accuracy"] for r in map(json.loads, f) if r.get("eval_accuracy") is not None][-10:]
        assert row.split(" | ")[2] == f"{100 * sum(acc) / len(acc):.2f}%"  # mean of the last 10 evaluations
    assert "74.78% → 71.55%" in text  # the authors' numbers beside ours
    if {"inherit", "magnitude"} <= set(runs):  # structured vs unstructured at the same non-zero budget
        with open(os.path.join(results, NAME, "magnitude", "summary.json")) as f:
            m = json.load(f)
        rows = [line for line in text.splitlines() if line.startswith("| magnitude |")]
        assert len(rows) == 2 and f"({m['final_nonzero_params']:,} non-zero)" in rows[0]
        f32 = m["tflite_variants"]["float32"]
        cells = (f"| {m['final_nonzero_params']:,} | {m['final_params']:,} | {f32['size_bytes']:,} | "
                 f"{f32['gzip_bytes']:,} |")
        assert cells in rows[1]
    else:
        assert "Structured vs unstructured" not in text


def test_experiments_not_started_are_listed_with_their_plan_and_the_authors_numbers(tmp_path):
    (tmp_path / "results").mkdir()
    full = make_results.render(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"))
    for name, exp in reproduce.EXPERIMENTS.items():
        text = full.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert (f"**Not run yet.** Planned: {exp.dataset} / {exp.model}, k = {exp.k}, {exp.rounds} rounds, "
                f"{exp.clients_per_round} clients per round") in text
        if exp.paper.get("baseline_acc") is not None:
            assert f"{exp.paper['baseline_acc']:.2f}% → {exp.paper['pruned_acc']:.2f}%" in text
        else:  # LEAF's task: no authors' row
            assert "**authors**" not in text and exp.paper["note"] in text
        assert all((f"| {run} | not run yet |" in text) == (run not in make_results.OPTIONAL_RUNS)
                   for run in make_results.RUN_ORDER)
        assert set(make_results.OPTIONAL_RUNS) == set(reproduce.EXTRA_RUNS)
        assert ("**Not the paper's client optimizer:**" in text) == (exp.client_optimizer == "sgd")
        assert ("held by the server, continued by every client" in text) == (exp.client_optimizer == "shared_adam")
    assert "clients train with SGD, lr 0.05 (the authors: Adam, lr 1e-3)" in full
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_centralized_reference_uses_the_experiments_model_and_the_clients_optimizer():
    exp = reproduce.EXPERIMENTS["celeba_cnn_smiling"]
    kwargs = reproduce.centralized_kwargs(exp, seed=3)
    assert kwargs == dict(epochs=exp.central_epochs, batch_size=32, lr=1e-3, seed=3, celeba_attribute="smiling")
    assert reproduce.ALL_RUNS[0] == reproduce.CENTRALIZED and reproduce.CENTRALIZED not in reproduce.RUNS
    import inspect

    from tff_prune.centralized import run_centralized

    inspect.signature(run_centralized).bind("celeba", "cnn", "/tmp/x", **kwargs)  # every key is an argument


def test_the_centralized_reference_is_reported_beside_the_runs(tmp_path):
    from tff_prune.centralized import CentralizedResult
    from tff_prune.report import write_json

    results = tmp_path / "results"
    curve = [dict(epoch=e, train_loss=1.0 / e, train_accuracy=0.5 + 0.1 * e, test_loss=1.0, test_accuracy=a,
                  seconds=1.0) for e, a in ((1, 0.7712), (2, 0.8561), (3, 0.8437))]
    summary = {"dataset": "celeba", "model": "resnet", "epochs": 3, "batch_size": 32, "lr": 1e-3,
               "num_train_clients": 248, **CentralizedResult(curve, 5230, 633, 0.5498).to_json()}
    write_json(str(results / "celeba_resnet" / "centralized" / "summary.json"), summary)
    full = make_results.render(str(results), str(tmp_path / "RESULTS.md"))
    text = full.split("## celeba_resnet\n", 1)[1].split("\n## ", 1)[0]
    assert ("on the 248 training clients' 5,230 examples pooled, 3 epochs): test accuracy 84.37% after the last "
            "epoch, best 85.61% (epoch 2, chosen on the test set); predicting the test set's majority class "
            "scores 54.98%.") in text
    assert (tmp_path / "results" / "celeba_resnet.png").stat().st_size > 0
    other = full.split("## femnist_cnn\n", 1)[1].split("\n## ", 1)[0]
    assert "Centralized reference: not run yet (`tff-prune-reproduce --experiment femnist_cnn --runs centralized`)" \
        in other


def test_other_seeds_go_to_their_own_folder_and_bad_seed_is_refused(capsys):
    assert reproduce.seed_dir("/r", "celeba_resnet_sgd", 0) == os.path.join("/r", "celeba_resnet_sgd")
    assert reproduce.seed_dir("/r", "celeba_resnet_sgd", 2) == os.path.join("/r", "celeba_resnet_sgd", "seed2")
    with pytest.raises(RuntimeError, match=r"\(seed 2\) needs the inherit run's final size"):
        reproduce.magnitude_sparsity(reproduce.EXPERIMENTS["femnist_cnn"], "/nonexistent", "femnist_cnn", seed=2)
    with pytest.raises(SystemExit):
        reproduce_cli.main(["--experiment", "femnist_cnn", "--seed", "-1"])
    assert "--seed: must be >= 0, got -1" in capsys.readouterr().err


def test_runs_on_other_seeds_are_tabled_against_the_same_seeds_fedavg(tmp_path):
    """Seed 1 is seed 0's committed runs with inherit_low's test accuracy raised by exactly 1 point."""

    src = os.path.join(ROOT, "results", "celeba_resnet_sgd")
    if not all(os.path.isfile(os.path.join(src, r, "summary.json")) for r in ("fedavg", "inherit_low", "reinit")):
        pytest.skip("no committed celeba_resnet_sgd results")
    name = tmp_path / "results" / "celeba_resnet_sgd"
    for folder in (name, name / "seed1"):
        folder.mkdir(parents=True)
        shutil.copy(os.path.join(src, "experiment.json"), folder)
        for run in ("fedavg", "inherit_low"):
            (folder / run).mkdir()
            for f in ("summary.json", "metrics.jsonl"):
                shutil.copy(os.path.join(src, run, f), folder / run)
    (name / "reinit").mkdir()  # seed 0 only
    for f in ("summary.json", "metrics.jsonl"):
        shutil.copy(os.path.join(src, "reinit", f), name / "reinit")
    (name / "seedx").mkdir()  # not a seed
    (name / "seed7").mkdir()  # no experiment.json: not started
    lines = (name / "seed1" / "inherit_low" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        if r.get("eval_accuracy") is not None:
            r["eval_accuracy"] += 0.01
    (name / "seed1" / "inherit_low" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert make_results.extra_seeds(str(tmp_path / "results"), "celeba_resnet_sgd") == [1]

    full = make_results.render(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"))
    text = full.split("## celeba_resnet_sgd\n", 1)[1].split("\n## ", 1)[0]
    base = make_results.last_mean(_records(src, "fedavg"))
    low = make_results.last_mean(_records(src, "inherit_low"))
    params = json.load(open(os.path.join(src, "inherit_low", "summary.json")))["final_params"]
    d0, d1 = 100 * (low - base), 100 * (low + 0.01 - base)
    assert "Across seeds (seed 0 is the table above;" in text
    assert (f"| fedavg | {100 * base:.2f}% / {100 * base:.2f}% | {100 * base:.2f}% | +0.00 / +0.00 | +0.00 | "
            "30,626 / 30,626 | 1.00× / 1.00× |") in text
    assert (f"| inherit_low | {100 * low:.2f}% / {100 * (low + 0.01):.2f}% | {100 * (low + 0.005):.2f}% | "
            f"{d0:+.2f} / {d1:+.2f} | {(d0 + d1) / 2:+.2f} | {params:,} / {params:,} |") in text
    re = make_results.last_mean(_records(src, "reinit"))
    assert (f"| reinit | {100 * re:.2f}% / – | {100 * re:.2f}% (1 of 2 seeds) | {100 * (re - base):+.2f} / – | "
            f"{100 * (re - base):+.2f} |") in text
    assert "| inherit |" not in text.split("Across seeds", 1)[1]  # no seed has it: no row


def _records(folder: str, run: str) -> list:
    from tff_prune import report

    return report.read_metrics(os.path.join(folder, run, report.METRICS_FILE))


def test_celeba_male_variants_collects_every_fedavg_curve_on_male_and_nothing_else(tmp_path):
    def run(folder, exp, accs):
        (folder / "fedavg").mkdir(parents=True)
        (folder / "experiment.json").write_text(json.dumps(exp))
        rows = [{"round": i + 1, "eval_accuracy": a, "clients": ["1", "2", "3"]} for i, a in enumerate(accs)]
        (folder / "fedavg" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    base = dict(dataset="celeba", model="cnn", clients_per_round=20, client_optimizer="shared_adam", client_lr=1e-3)
    run(tmp_path / "celeba_cnn", dict(base, celeba_attribute="male"), [0.5] * 5 + [0.6] * 10)
    run(tmp_path / "celeba_cnn_smiling", dict(base, celeba_attribute="smiling"), [0.7] * 3)  # not `male`
    run(tmp_path / "femnist_cnn", dict(base, dataset="femnist"), [0.7] * 3)
    (tmp_path / "trials").mkdir()
    rows = [{"round": 1, "eval_accuracy": 0.25, "clients": ["a"] * 50}, {"round": 2, "eval_accuracy": None},
            {"round": 3, "eval_accuracy": 0.75}]
    (tmp_path / "trials" / "celeba_resnet_fedavg_adam_50clients_3rounds.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "trials" / "celeba_empty.jsonl").write_text("")
    png = tmp_path / "out" / "male.png"
    text = make_results.male_variants(str(tmp_path), str(png))
    assert png.stat().st_size > 0
    rows = [line for line in text.splitlines() if line.startswith("| celeba_") or line.startswith("| trials/")]
    assert rows == ["| celeba_cnn/fedavg | cnn | shared_adam 0.001 | 20 | 15 | 60.00% | 60.00% |",
                    "| trials/celeba_resnet_fedavg_adam_50clients_3rounds | resnet | adam | 50 | 3 | 50.00% | 75.00% |"]
    assert make_results.male_variants(str(tmp_path / "none"), str(tmp_path / "x.png")) == ""
    assert not (tmp_path / "x.png").exists()
