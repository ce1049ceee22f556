"""``--client-optimizer shared_adam``: clients continue one server-held Adam state (real TFF processes)."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from tff_prune.federated import checkpoint, loop
from tff_prune.federated.process import build_fed_avg, keras_to_model_weights
from tff_prune.federated.shared_adam import (carry_client_optimizer_state, client_optimizer_state,
                                             with_client_optimizer_state)
from tff_prune.federated.variables import tff_variable_split
from tff_prune.pruning import prune_model

from tests.test_federated import make_config

pytestmark = pytest.mark.integration


def _builder():
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((6, 6, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = tf.keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax", name="head")(x))


def _data(n: int, seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _weights(process, state):
    w = process.get_model_weights(state)
    return list(w.trainable) + list(w.non_trainable)


def test_one_client_two_rounds_equal_one_adam_run_through_both_datasets():
    spec = _data(8, 0).element_spec
    model = _builder()
    fresh = build_fed_avg(_builder, spec, 1e-2, 1.0, "adam")
    shared = build_fed_avg(_builder, spec, 1e-2, 1.0, "shared_adam")
    start = keras_to_model_weights(model)
    d1, d2 = _data(24, 1), _data(16, 2)
    s = shared.set_model_weights(shared.initialize(), start)
    first = shared.next(s, [d1])
    f = fresh.set_model_weights(fresh.initialize(), start)
    # Round 1 starts from zero moments: exactly TFF's FedAvg with a fresh client Adam.
    for a, b in zip(_weights(shared, first.state), _weights(fresh, fresh.next(f, [d1]).state)):
        np.testing.assert_array_equal(a, b)
    assert int(first.state.client_work["step"]) == 3  # 24 examples, batch 8
    second = shared.next(first.state, [d2])
    assert int(second.state.client_work["step"]) == 5
    # With one client and server SGD 1.0, round 2 continues the same Adam: one run through d1 then d2.
    one_run = fresh.next(f, [d1.concatenate(d2)])
    for a, b in zip(_weights(shared, second.state), _weights(fresh, one_run.state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert second.metrics["client_work"]["train"]["num_examples"] == 16
    # A fresh Adam in round 2 (TFF's FedAvg) moves differently.
    plain = fresh.next(fresh.next(f, [d1]).state, [d2])
    assert max(np.abs(a - b).max() for a, b in zip(_weights(fresh, plain.state), _weights(shared, second.state))) > 1e-4


def test_the_server_state_is_the_example_weighted_mean_of_the_clients_moments():
    spec = _data(8, 0).element_spec
    shared = build_fed_avg(_builder, spec, 1e-2, 1.0, "shared_adam")
    state = shared.set_model_weights(shared.initialize(), keras_to_model_weights(_builder()))
    datasets = [_data(24, 1), _data(40, 2)]
    both = shared.next(state, datasets).state.client_work
    alone = [shared.next(state, [d]).state.client_work for d in datasets]
    for key in ("accumulator", "preconditioner"):
        for m, a, b in zip(both[key], alone[0][key], alone[1][key]):
            np.testing.assert_allclose(m, (24 * a + 40 * b) / 64, rtol=1e-5, atol=1e-9)
    assert int(both["step"]) == round((24 * 3 + 40 * 5) / 64)  # 4.25 local steps on average -> 4


def test_state_round_trip_and_carry_through_a_prune(caplog):
    spec = _data(8, 0).element_spec
    model = _builder()
    shared = build_fed_avg(_builder, spec, 1e-2, 1.0, "shared_adam")
    state = shared.next(shared.set_model_weights(shared.initialize(), keras_to_model_weights(model)),
                        [_data(24, 1)]).state
    arrays = client_optimizer_state(state)
    assert len(arrays) == 5 + 2 * len(tff_variable_split(model)[0])  # lr, betas, epsilon, step; two moments
    again = with_client_optimizer_state(shared.initialize(), arrays)
    for a, b in zip(client_optimizer_state(again), arrays):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        with_client_optimizer_state(state, arrays[:-1])
    assert client_optimizer_state(build_fed_avg(_builder, spec, 1e-2, 1.0, "adam").initialize()) == []

    keep = {"conv1": [0, 2, 3]}
    pruned = prune_model(model, keep)
    new_process = build_fed_avg(lambda: tf.keras.models.clone_model(pruned), spec, 1e-2, 1.0, "shared_adam")
    new_state = new_process.set_model_weights(new_process.initialize(), keras_to_model_weights(pruned))
    carried = carry_client_optimizer_state(state, model, new_state, lambda m: prune_model(m, keep))
    old, new = state.client_work, carried.client_work
    names = [v.name.split(":")[0] for v in tff_variable_split(model)[0]]
    new_names = [v.name.split(":")[0] for v in tff_variable_split(pruned)[0]]
    assert names == new_names
    assert int(new["step"]) == int(old["step"]) == 3
    for key in ("accumulator", "preconditioner"):
        o, n = dict(zip(names, old[key])), dict(zip(names, new[key]))
        np.testing.assert_array_equal(n["conv1/kernel"], np.asarray(o["conv1/kernel"])[..., [0, 2, 3]])
        np.testing.assert_array_equal(n["conv1/bias"], np.asarray(o["conv1/bias"])[[0, 2, 3]])
        np.testing.assert_array_equal(n["bn1/gamma"], np.asarray(o["bn1/gamma"])[[0, 2, 3]])
        np.testing.assert_array_equal(n["conv2/kernel"], np.asarray(o["conv2/kernel"])[:, :, [0, 2, 3], :])
        np.testing.assert_array_equal(n["head/kernel"], o["head/kernel"])
    assert np.abs(np.asarray(old["preconditioner"][0])).sum() > 0  # the moments are not trivially zero
    # Without shared Adam there is nothing to carry.
    fresh = build_fed_avg(_builder, spec, 1e-2, 1.0, "adam")
    assert carry_client_optimizer_state(fresh.initialize(), model, new_state, lambda m: prune_model(m, keep)) is None
    # A surgery that does not give the new architecture: fresh moments, and a WARNING says so.
    with caplog.at_level(logging.WARNING, logger="tff_prune.federated.shared_adam"):
        assert carry_client_optimizer_state(state, model, new_state,
                                            lambda m: prune_model(m, {"conv1": [0, 1]})) is None
    assert [r.getMessage() for r in caplog.records if r.name == "tff_prune.federated.shared_adam"] == [
        "shared_adam: the carried moments' shapes do not fit the new architecture; it starts from "
        "fresh Adam moments"]


def test_a_prune_with_inherited_weights_carries_the_moments_and_resume_continues_them(tmp_path, femnist):
    kw = dict(client_optimizer="shared_adam", weights="inherit")
    full = loop.run(make_config(tmp_path, "full", rounds=3, **kw), data=femnist, progress=False)
    assert full.records[1]["prune"]["action"] == "accepted"
    loop.run(make_config(tmp_path, "part", rounds=2, **kw), data=femnist, progress=False)
    loop.run(make_config(tmp_path, "same", rounds=2, prune=False, **kw), data=femnist, progress=False)
    ck, unpruned = checkpoint.load(str(tmp_path / "part")), checkpoint.load(str(tmp_path / "same"))
    def step(arrays):  # the one integer of build_adam's state
        (count,) = [a for a in arrays if a.dtype.kind == "i"]
        return int(count)

    # The process built for the pruned architecture in round 2 continued round 1's step count (a fresh state
    # would hold round 2's steps only); the same clients trained the same number of steps without the prune.
    assert step(ck.client_optimizer) == step(unpruned.client_optimizer) > 0
    assert [a.shape for a in ck.client_optimizer] != [a.shape for a in unpruned.client_optimizer]
    resumed = loop.run(make_config(tmp_path, "part", rounds=3, **kw), data=femnist, resume=True, progress=False)
    assert resumed.records[2]["widths"] == full.records[2]["widths"]
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
