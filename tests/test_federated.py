"""Real TFF rounds on real FEMNIST writers: pruning on the server, new process, resume."""

import json
import os

import numpy as np
import pytest

from tests.conftest import cnn_param_count
from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.federated import checkpoint, loop
from tff_prune.report import read_metrics

pytestmark = pytest.mark.integration


def make_config(tmp_path, name, **kw):
    base = dict(rounds=3, clients_per_round=3, local_epochs=1, k=1.0, max_prune_round=50, patience=3,
                max_clients=20, seed=4, output_dir=str(tmp_path / name), latency_runs=10, schedule="paper")
    base.update(kw)
    return ExperimentConfig(**base)


def test_sampling_is_seeded_and_without_replacement():
    ids = [f"c{i}" for i in range(50)]
    a = loop.sample_clients(ids, 10, seed=1, round_num=7)
    assert a == loop.sample_clients(ids, 10, seed=1, round_num=7)
    assert len(set(a)) == 10
    assert a != loop.sample_clients(ids, 10, seed=1, round_num=8)
    assert a != loop.sample_clients(ids, 10, seed=2, round_num=7)


def test_filters_are_removed_and_training_continues(tmp_path, femnist):
    cfg = make_config(tmp_path, "run")
    result = loop.run(cfg, data=femnist, progress=False)
    recs = result.records
    assert [r["round"] for r in recs] == [1, 2, 3]
    first = recs[0]
    assert first["params"] == 56_126 and first["flops"] == 7_529_588
    assert first["prune"]["action"] == "skipped"  # round 1 trains the initial model
    assert recs[1]["prune"]["action"] == "accepted"  # the aggregate of round 1 is pruned
    w = recs[1]["prune"]["widths_after"]
    assert w["conv1"] < 32 and w["conv2"] < 64
    # Round 2 trained the pruned architecture in a new LearningProcess.
    assert recs[1]["widths"] == w and recs[1]["params"] == cnn_param_count(w["conv1"], w["conv2"])
    assert all(np.isfinite(r["train_loss"]) and r["num_examples"] > 0 for r in recs)
    final = result.model
    assert final.get_layer("conv1").filters == recs[-1]["widths"]["conv1"]
    assert result.final["params"] == recs[-1]["params"] < 56_126
    # Bytes: float32 weights x clients, both directions, accumulated.
    assert first["bytes_down"] == first["bytes_up"] == 4 * 56_126 * 3
    assert recs[-1]["cumulative_bytes"] == sum(r["bytes_down"] + r["bytes_up"] for r in recs)
    # Files: one JSON line per round, checkpoint at the last round.
    on_disk = read_metrics(os.path.join(cfg.output_dir, "metrics.jsonl"))
    assert [r["round"] for r in on_disk] == [1, 2, 3]
    assert json.loads(json.dumps(on_disk[1]))["prune"]["action"] == "accepted"
    assert checkpoint.load(cfg.output_dir).round == 3


def test_no_prune_baseline_keeps_the_architecture(tmp_path, femnist):
    result = loop.run(make_config(tmp_path, "base", rounds=2, prune=False), data=femnist, progress=False)
    assert [r["params"] for r in result.records] == [56_126, 56_126]
    assert {r["prune"]["action"] for r in result.records} == {"skipped"}


def test_resume_continues_exactly_where_it_stopped(tmp_path, femnist):
    full = loop.run(make_config(tmp_path, "full", rounds=3, weights="reinit"), data=femnist, progress=False)
    part_cfg = make_config(tmp_path, "part", rounds=2, weights="reinit")
    part = loop.run(part_cfg, data=femnist, progress=False)
    ck = checkpoint.load(part_cfg.output_dir)
    assert ck.round == 2
    # The checkpoint holds the aggregate of round 2 (round 3 decides on pruning it).
    assert loop.restore_state(ck).model.count_params() == part.final["params"]
    for a, b in zip(ck.weights, part.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    resumed = loop.run(make_config(tmp_path, "part", rounds=3, weights="reinit"), data=femnist,
                       resume=True, progress=False)
    r3_full, r3_res = full.records[2], resumed.records[2]
    assert [r["round"] for r in resumed.records] == [1, 2, 3]
    assert r3_res["clients"] == r3_full["clients"]  # same sampling sequence
    assert r3_res["prune"] == r3_full["prune"]  # same decision on the same aggregate
    assert r3_res["widths"] == r3_full["widths"]
    assert resumed.records[:2] == read_metrics(os.path.join(part_cfg.output_dir, "metrics.jsonl"))[:2]
    # Controller state came from the checkpoint.
    assert r3_res["prune"]["failures"] == r3_full["prune"]["failures"]
    # Same start weights and same clients: the same training (TF CPU kernels are deterministic here).
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resume_rejects_changed_flags_and_missing_checkpoint(tmp_path, femnist):
    cfg = make_config(tmp_path, "r", rounds=1)
    with pytest.raises(Exception, match="no checkpoint"):
        loop.run(cfg, data=femnist, resume=True, progress=False)
    loop.run(cfg, data=femnist, progress=False)
    with pytest.raises(ConfigError, match="--k"):
        loop.run(make_config(tmp_path, "r", rounds=2, k=2.0), data=femnist, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        loop.run(cfg, data=femnist, progress=False)
    # The last round is checkpointed but not exported (loop.run does not export): --resume trains nothing.
    assert [r["round"] for r in loop.run(cfg, data=femnist, resume=True, progress=False).records] == [1]


def test_too_many_clients_per_round(tmp_path, femnist):
    with pytest.raises(ConfigError, match="--clients-per-round: 25 requested but .* only 20 clients"):
        loop.run(make_config(tmp_path, "x", clients_per_round=25, max_clients=None), data=femnist,
                 progress=False)


def test_worker_pids_finds_tffs_local_worker_and_stopping_it_lets_tff_start_another():
    import tensorflow as tf
    import tensorflow_federated as tff

    from tff_prune.federated.process import stop_worker_processes, worker_pids

    stop_worker_processes()  # whatever earlier tests left
    add_one = tff.tensorflow.computation(lambda x: x + 1, tf.int32)
    assert add_one(1) == 2
    pids = worker_pids()
    assert len(pids) == 1
    assert stop_worker_processes() == pids
    import time

    def state():
        with open(f"/proc/{pids[0]}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    deadline = time.monotonic() + 5
    while state() != "Z" and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.05)
    assert state() == "Z"  # killed, left for TFF's ServiceManager to reap
    assert add_one(2) == 3  # TFF notices and starts a new worker
    assert worker_pids() and worker_pids() != pids


def test_round_mode_final_prunes_freely_then_rounds_every_group_down_once(tmp_path, femnist):
    cfg = make_config(tmp_path, "final", rounds=4, k=0.8, max_prune_round=1, round_to=8, round_mode="final")
    res = loop.run(cfg, data=femnist, progress=False)
    actions = [(r["round"], r["prune"]["action"]) for r in res.records]
    assert actions == [(1, "skipped"), (2, "accepted"), (3, "accepted"), (4, "skipped")]
    band_widths = res.records[1]["widths"]  # round 2: the band's prune, not rounded
    assert any(w % 8 for name, w in band_widths.items() if name != "classifier")
    final = res.records[2]
    assert "final rounding to multiples of 8" in final["prune"]["reason"]
    for name in ("conv1", "conv2"):
        assert final["widths"][name] % 8 == 0 and band_widths[name] - 8 < final["widths"][name] <= band_widths[name]
    assert final["params"] == cnn_param_count(final["widths"]["conv1"], final["widths"]["conv2"])
    assert checkpoint.load(cfg.output_dir).steps["structured"]["rounded"]


def test_resume_continues_fedadams_server_moments(tmp_path, femnist):
    kw = dict(prune=False, server_optimizer="adam", server_lr=0.01)
    full = loop.run(make_config(tmp_path, "adam_full", rounds=3, **kw), data=femnist, progress=False)
    loop.run(make_config(tmp_path, "adam_part", rounds=2, **kw), data=femnist, progress=False)
    ck = checkpoint.load(str(tmp_path / "adam_part"))
    assert len(ck.server_optimizer) > 1  # lr, step, and first and second moments per trainable tensor
    resumed = loop.run(make_config(tmp_path, "adam_part", rounds=3, **kw), data=femnist, resume=True, progress=False)
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
