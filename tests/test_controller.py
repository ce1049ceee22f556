"""The paper's automatic stopping rule: accept on parameter drop, patience, last prune round."""

import pytest

from tff_prune.pruning import ControllerState, PruningController

W = {"conv1": 32}


def test_accept_resets_patience_and_three_failures_stop():
    c = PruningController(max_prune_round=50, patience=3)
    seq = []
    params = 1000
    assert not c.should_propose(1)  # round 1 trains the initial model: nothing aggregated yet
    for r, drop in enumerate([True, False, False, True, False, False, False, True], start=2):
        c.close_window(r)
        if not c.should_propose(r):
            seq.append("off")
            continue
        d = c.decide(r, params, params - 10 if drop else params, W, W)
        if d.action == "accepted":
            params -= 10
        seq.append((d.action, d.failures, d.stopped))
    assert seq == [("accepted", 0, False), ("rejected", 1, False), ("rejected", 2, False),
                   ("accepted", 0, False), ("rejected", 1, False), ("rejected", 2, False),
                   ("rejected", 3, True), "off"]
    assert c.state.accepted == 2
    assert "3 consecutive rounds" in c.state.stop_reason


def test_equal_parameter_count_is_not_a_drop():
    c = PruningController(max_prune_round=10, patience=1)
    d = c.decide(1, 500, 500, W, W)
    assert d.action == "rejected" and d.stopped


def test_stops_after_max_prune_round():
    # The aggregates of rounds 1..max_prune_round are pruned, at the start of rounds 2..max_prune_round+1.
    c = PruningController(max_prune_round=2, patience=3)
    assert not c.should_propose(1) and not c.state.stopped
    assert c.should_propose(2) and c.should_propose(3)
    assert not c.should_propose(4) and not c.state.stopped  # a query changes nothing
    assert not c.close_window(3) and not c.state.stopped
    assert c.close_window(4) and not c.close_window(5)
    assert c.state.stopped and "max_prune_round (2)" in c.state.stop_reason
    assert not c.should_propose(3)  # stopping is final


def test_zero_max_prune_round_never_prunes():
    c = PruningController(max_prune_round=0, patience=3)
    assert not any(c.should_propose(r) for r in range(1, 5))


def test_state_round_trip():
    c = PruningController(5, 3)
    c.decide(1, 10, 10, W, W)
    restored = PruningController(5, 3, ControllerState.from_dict(c.state.to_dict()))
    assert restored.state == c.state and restored.state.failures == 1


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        PruningController(5, 0)
    with pytest.raises(ValueError, match="max_prune_round"):
        PruningController(-1, 3)


def test_final_rounding_happens_once_and_only_after_pruning_stopped():
    c = PruningController(max_prune_round=2, patience=3)
    with pytest.raises(RuntimeError, match="after pruning has stopped"):
        c.final_rounding(2, 100, 90, W, W, 8)
    assert c.should_propose(2) and c.should_propose(3) and not c.should_propose(4)
    assert c.close_window(4)  # window over: stopped
    d = c.final_rounding(4, 1000, 900, {"conv1": 29}, {"conv1": 24}, 8)
    assert (d.action, d.params_after, d.widths_after, d.stopped) == ("accepted", 900, {"conv1": 24}, True)
    assert "multiples of 8" in d.reason and c.state.rounded and c.state.accepted == 1
    assert ControllerState.from_dict(c.state.to_dict()).rounded
    with pytest.raises(RuntimeError, match="once"):
        c.final_rounding(5, 900, 900, W, W, 8)
    c2 = PruningController(max_prune_round=0, patience=3)
    c2.close_window(2)
    assert c2.final_rounding(2, 100, 100, W, W, 8).action == "skipped"  # widths already multiples
