"""The accuracy-guarded default schedule (--schedule auto): its decisions on small models, and real TFF rounds."""

import os

import numpy as np
import pytest

from tests.conftest import cnn_param_count
from tff_prune.config import ExperimentConfig
from tff_prune.federated.steps.auto import AutoPruning, has_learned, has_plateaued, plateau_window, recovery_rounds
from tff_prune.federated.steps.base import RunState, architecture_builder
from tff_prune.models import get_model


def make_step(tmp_path, **kw):
    cfg = ExperimentConfig(**{"rounds": 100, "output_dir": str(tmp_path / "run"), **kw})
    model = get_model("cnn", "femnist", seed=0)
    return AutoPruning(cfg), RunState(model, model, architecture_builder(model))


def widths(run):
    return run.architecture.get_layer("conv1").filters, run.architecture.get_layer("conv2").filters


def test_plateau_needs_learning_then_a_slow_window():
    rising = list(np.linspace(0.05, 0.65, 40))
    assert not has_plateaued(rising, 10)
    learned_then_flat = [0.05] * 5 + list(np.linspace(0.05, 0.6, 15)) + [0.6] * 20
    assert has_plateaued(learned_then_flat, 10)
    assert not has_plateaued(learned_then_flat[:19], 10)  # fewer than two windows
    never_learned = [0.06 + 0.01 * (-1) ** i for i in range(40)]  # noise around the first value
    assert not has_plateaued(never_learned, 10) and not has_learned(never_learned, 10)
    assert has_learned(learned_then_flat, 10)
    # Last window +0.04 over the one before, 0.5 gained in all: 0.04 < 0.1 * 0.5 is a plateau, 0.06 is not.
    assert has_plateaued([0.0] * 10 + [0.46] * 10 + [0.50] * 10, 10)
    assert not has_plateaued([0.0] * 10 + [0.44] * 10 + [0.50] * 10, 10)


def test_windows_scale_with_the_rounds_and_flags_override(tmp_path):
    for rounds, w, f in ((20, 3, 2), (100, 5, 5), (500, 10, 10), (2000, 10, 10)):
        cfg = ExperimentConfig(rounds=rounds, output_dir=str(tmp_path))
        assert (plateau_window(cfg), recovery_rounds(cfg)) == (w, f)
    cfg = ExperimentConfig(rounds=500, plateau_window=4, recovery_rounds=7, output_dir=str(tmp_path))
    assert (plateau_window(cfg), recovery_rounds(cfg)) == (4, 7)


def test_warm_up_waits_for_the_plateau_or_its_limit(tmp_path):
    step, run = make_step(tmp_path)  # R = 100: W = 5, at least 10 and at most 40 warm-up rounds
    assert "round 1 trains the initial model" in step.before_round(run, None, 1).reason
    step.history = list(np.linspace(0.05, 0.5, 20))  # still rising
    d = step.before_round(run, None, 21)
    assert d.action == "skipped" and "still rising" in d.reason and step.phase == "warmup"
    step.history = [0.05] * 3 + list(np.linspace(0.05, 0.6, 7)) + [0.6] * 10  # plateau after 20 rounds
    d = step.before_round(run, None, 21)
    assert d.action == "trial" and "warm-up ends (plateau)" in d.reason
    step2, run2 = make_step(tmp_path)
    step2.history = list(np.linspace(0.05, 0.65, 40))
    d = step2.before_round(run2, None, 41)
    assert d.action == "trial" and "warm-up limit (40 rounds)" in d.reason
    step3, run3 = make_step(tmp_path)
    step3.history = [0.06 + 0.01 * (-1) ** i for i in range(40)]  # never left its start
    d = step3.before_round(run3, None, 41)
    assert d.action == "skipped" and d.stopped and "did not leave its initial accuracy" in d.reason
    assert widths(run3) == (32, 64)


def test_a_fixed_warm_up_ends_after_its_rounds(tmp_path):
    step, run = make_step(tmp_path, warmup_rounds=5)
    d = step.before_round(run, None, 5)
    assert d.action == "skipped" and "round 4 of --warmup-rounds 5" in d.reason
    d = step.before_round(run, None, 6)
    assert d.action == "trial" and "warm-up ends (--warmup-rounds 5)" in d.reason and widths(run) == (24, 48)


def test_a_candidate_within_the_budget_is_accepted_one_over_it_is_rejected(tmp_path):
    step, run = make_step(tmp_path, max_accuracy_loss=0.01)
    original = run.model
    step.phase = "ready"
    d = step.before_round(run, None, 20)
    # 25% of each group's weakest channels: conv1 32 -> 24, conv2 64 -> 48; the current model trains beside it.
    assert d.action == "trial" and widths(run) == (24, 48) and run.rebuild and step.shadow is original
    assert d.params_after == cnn_param_count(24, 48) and d.params_before == 56_126
    assert step.before_round(run, None, 24).action == "skipped"  # trial round 5 of 5
    step.diffs = [0.004, 0.006, 0.005]  # the current model was 0.5 points better on validation
    d = step.before_round(run, None, 25)
    assert d.action == "accepted" and widths(run) == (24, 48) and step.shadow is None
    assert step.used == pytest.approx(0.005) and "budget used 0.50% of 1.00%" in d.reason
    candidate = run.model
    run.rebuild = False
    d = step.before_round(run, None, 26)
    assert d.action == "trial" and widths(run) == (18, 36)
    step.diffs = [0.01, 0.008, 0.006]  # 0.8 points more: 1.3 in all, over the 1-point budget
    run.process, run.state = "candidate process", "candidate state"
    d = step.before_round(run, None, 31)
    assert d.action == "rejected" and run.model is candidate and widths(run) == (24, 48)
    assert not run.rebuild and run.process is None  # the current model's own process continues
    assert d.params_after == d.params_before == cnn_param_count(24, 48)
    assert step.fraction == 0.125 and step.rejections == 1 and step.used == pytest.approx(0.005)
    d = step.before_round(run, None, 32)
    assert d.action == "trial" and widths(run) == (21, 42)  # floor(24 / 8) = 3 and 6 channels go


def test_a_candidate_that_gains_costs_nothing(tmp_path):
    step, run = make_step(tmp_path, max_accuracy_loss=0.0)
    step.phase = "ready"
    step.before_round(run, None, 20)
    step.diffs = [-0.01, 0.0, -0.002]
    assert step.before_round(run, None, 25).action == "accepted" and step.used == 0.0


def test_pruning_stops_after_patience_rejections_and_at_the_trial_window(tmp_path):
    step, run = make_step(tmp_path, patience=2)
    step.phase = "ready"
    for r in (20, 26):
        step.before_round(run, None, r)
        step.diffs = [0.5]
        d = step.before_round(run, None, r + 5)
        assert d.action == "rejected"
    assert d.stopped and "pruning stops" in d.reason and step.stop_reason == "2 candidates rejected (round 31)"
    assert widths(run) == (32, 64)
    later = step.before_round(run, None, 32)
    assert later.action == "skipped" and later.stopped and later.reason == step.stop_reason
    step2, run2 = make_step(tmp_path)
    step2.phase = "ready"
    d = step2.before_round(run2, None, 61)  # R = 100: no trial starts after round 60
    assert d.action == "skipped" and d.stopped and "no trial can start after round 60" in d.reason


def test_trials_end_before_quantization_aware_training(tmp_path):
    step, run = make_step(tmp_path, qat_rounds=45)  # R = 100, F = 5: QAT from round 56, last trial at 50
    assert step.last_trial == 50
    step.phase = "ready"
    assert step.before_round(run, None, 51).stopped


def test_a_step_that_removes_nothing_stops(tmp_path):
    step, run = make_step(tmp_path, step_fraction=0.01)  # floor(0.01 * 64) = 0 channels
    step.phase = "ready"
    d = step.before_round(run, None, 20)
    assert d.stopped and "removes no channel" in d.reason and widths(run) == (32, 64)


def test_state_round_trips_inside_a_trial(tmp_path):
    step, run = make_step(tmp_path)
    step.phase, step.history = "ready", [0.1, 0.2]
    step.before_round(run, None, 20)
    step.diffs = [0.003]
    state, arrays = step.state_dict()
    other, _ = make_step(tmp_path)
    other.load_state_dict(state, arrays)
    assert other.state_dict()[0] == state
    for a, b in zip(other.shadow.get_weights(), step.shadow.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.integration
def test_auto_rounds_in_tff_trial_accept_and_resume_inside_a_trial(tmp_path, femnist, monkeypatch):
    from tff_prune.federated import checkpoint, loop

    def cfg(name):
        return ExperimentConfig(rounds=12, clients_per_round=2, local_epochs=1, max_clients=20, seed=4,
                                latency_runs=5, val_clients=3, warmup_rounds=6, recovery_rounds=2,
                                max_accuracy_loss=0.5, output_dir=str(tmp_path / name))

    full = loop.run(cfg("full"), data=femnist, progress=False).records
    actions = [r["prune"]["action"] for r in full]
    # Warm-up of 6 rounds (--warmup-rounds), a trial of F = 2 rounds, no trial after min(0.6 R, R - F) = 7.
    assert actions == ["skipped"] * 6 + ["trial", "skipped", "accepted"] + ["skipped"] * 3
    assert all(r["val_accuracy"] is not None for r in full[:6]) and "val_accuracy" not in full[6]
    assert full[6]["params"] == cnn_param_count(24, 48) and full[6]["prune"]["params_before"] == 56_126
    # Trial rounds train both models on the same clients: both broadcast, both upload.
    for rec in full[6:8]:
        assert rec["bytes_down"] == rec["bytes_up"] == 4 * 2 * (56_126 + cnn_param_count(24, 48))
    assert full[9]["bytes_down"] == 4 * 2 * cnn_param_count(24, 48)
    cost = full[7]["val_accuracy_current"] - full[7]["val_accuracy"]  # the one verification round (ceil(2/2))
    assert f"{-cost:+.2%} against the current architecture" in full[8]["prune"]["reason"]
    assert full[-1]["prune"]["stopped"] and "no trial can start after round 7" in full[-1]["prune"]["reason"]

    real_save = loop._save

    def crash_after_round_7(config, rs, steps, r):
        real_save(config, rs, steps, r)
        if r == 7:
            raise KeyboardInterrupt("simulated crash inside the trial")

    monkeypatch.setattr(loop, "_save", crash_after_round_7)
    with pytest.raises(KeyboardInterrupt):
        loop.run(cfg("part"), data=femnist, progress=False)
    monkeypatch.setattr(loop, "_save", real_save)
    assert checkpoint.load(str(tmp_path / "part")).steps["auto"]["phase"] == "trial"
    resumed = loop.run(cfg("part"), data=femnist, resume=True, progress=False).records
    for a, b in zip(full, resumed):
        assert (a["prune"], a["params"], a["clients"], a["bytes_down"]) == \
               (b["prune"], b["params"], b["clients"], b["bytes_down"])
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
    assert os.path.isfile(tmp_path / "part" / "checkpoint.npz")
