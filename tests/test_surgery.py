"""Structured surgery: the pruned model equals the original with those filters zeroed."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import cnn_param_count
from tff_prune.accounting import count_params
from tff_prune.models import get_model
from tff_prune.pruning import barriers, dependency_graph, mask_model, prune_model

L = tf.keras.layers


def prunable_producers(model):
    return {p for g in dependency_graph(model).groups if g.prunable for p in g.producers}


@pytest.fixture(scope="module")
def cnn():
    return get_model("cnn", "femnist", seed=11)


@pytest.fixture(scope="module")
def keep():
    rng = np.random.default_rng(0)
    return {"conv1": np.sort(rng.choice(32, 17, replace=False)), "conv2": np.sort(rng.choice(64, 43, replace=False))}


def test_inherit_equals_masked_original_on_real_images(cnn, keep, real_images):
    pruned = prune_model(cnn, keep, weights="inherit")
    masked = mask_model(cnn, keep)
    out_p, out_m = pruned(real_images).numpy(), masked(real_images).numpy()
    assert np.abs(out_p - out_m).max() <= 1e-5
    # The masking really changed the function (the test would catch a no-op mask).
    assert np.abs(cnn(real_images).numpy() - out_m).max() > 1e-4


def test_pruned_shapes_weights_and_parameter_count(cnn, keep):
    pruned = prune_model(cnn, keep)
    assert count_params(pruned) == cnn_param_count(17, 43)
    assert pruned.get_layer("conv1").filters == 17 and pruned.get_layer("conv2").filters == 43
    k1, b1 = cnn.get_layer("conv1").get_weights()
    np.testing.assert_array_equal(pruned.get_layer("conv1").get_weights()[0], k1[..., keep["conv1"]])
    np.testing.assert_array_equal(pruned.get_layer("conv1").get_weights()[1], b1[keep["conv1"]])
    k2 = cnn.get_layer("conv2").get_weights()[0]
    np.testing.assert_array_equal(pruned.get_layer("conv2").get_weights()[0],
                                  k2[:, :, keep["conv1"], :][..., keep["conv2"]])
    w3 = cnn.get_layer("classifier").get_weights()[0]
    np.testing.assert_array_equal(pruned.get_layer("classifier").get_weights()[0], w3[keep["conv2"], :])
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in cnn.layers]


def test_a_plan_made_on_one_model_prunes_a_copy_with_the_copys_values(cnn, keep):
    from tff_prune.pruning import plan_from_keep

    plan = plan_from_keep(cnn, keep)
    copy = tf.keras.models.clone_model(cnn)
    copy.set_weights([w * 0 + i for i, w in enumerate(cnn.get_weights())])  # other values, same shapes and names
    pruned = prune_model(copy, plan)
    np.testing.assert_array_equal(pruned.get_layer("conv1").get_weights()[0], np.zeros((5, 5, 1, 17)))
    np.testing.assert_array_equal(pruned.get_layer("conv2").get_weights()[1], np.full(43, 3.0))
    assert pruned.count_params() == plan.params_after


def test_the_authors_widths_give_their_parameter_count(cnn):
    # Paper notebook: FEMNIST CNN 56,126 -> 21,488 parameters.
    pruned = prune_model(cnn, {"conv1": np.arange(17), "conv2": np.arange(43)})
    assert count_params(cnn) == 56_126
    assert count_params(pruned) == 21_488


def test_partial_keep_leaves_other_layers_whole(cnn):
    pruned = prune_model(cnn, {"conv2": [0, 5, 9]})
    assert pruned.get_layer("conv1").filters == 32 and pruned.get_layer("conv2").filters == 3
    assert count_params(pruned) == cnn_param_count(32, 3)


def test_reinit_gives_fresh_weights_reproducibly(cnn, keep):
    a = prune_model(cnn, keep, weights="reinit", seed=5)
    b = prune_model(cnn, keep, weights="reinit", seed=5)
    c = prune_model(cnn, keep, weights="reinit", seed=6)
    inherit = prune_model(cnn, keep, weights="inherit")
    ka, kb, kc = (m.get_layer("conv2").get_weights()[0] for m in (a, b, c))
    np.testing.assert_array_equal(ka, kb)
    assert not np.allclose(ka, kc)
    assert not np.allclose(ka, inherit.get_layer("conv2").get_weights()[0])
    assert count_params(a) == count_params(inherit)


def test_original_model_is_not_modified(cnn, keep):
    before = [w.copy() for w in cnn.get_weights()]
    prune_model(cnn, keep)
    mask_model(cnn, keep)
    for x, y in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad, message", [
    ({"nope": [0]}, "not in the model"),
    ({"classifier": [0]}, "cannot be pruned"),
    ({"conv1": []}, "at least one filter must stay"),
    ({"conv1": [0, 32]}, r"outside \[0, 32\)"),
    ({"conv1": [1, 1]}, "duplicate"),
    ({"conv1": [0.5]}, "integer"),
])
def test_bad_keep_is_rejected_with_a_clear_message(cnn, bad, message):
    with pytest.raises(ValueError, match=message):
        prune_model(cnn, bad)


def test_bad_weights_mode(cnn):
    with pytest.raises(ValueError, match="'inherit' or 'reinit'"):
        prune_model(cnn, {"conv1": [0]}, weights="random")


def test_batchnorm_depthwise_and_flatten_are_pruned_through(real_images):
    inputs = tf.keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, name="c1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.Conv2D(6, 3, strides=2, name="c2")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10, name="head")(x)
    model = tf.keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.5, 2, 8)])
    model.get_layer("dw").set_weights([rng.normal(size=w.shape).astype("float32")
                                       for w in model.get_layer("dw").get_weights()])
    assert prunable_producers(model) == {"c1", "c2"} and barriers(model) == {}
    keep = {"c1": [1, 4, 6], "c2": [0, 3]}
    pruned, masked = prune_model(model, keep), mask_model(model, keep)
    np.testing.assert_allclose(pruned(real_images).numpy(), masked(real_images).numpy(), atol=1e-5)
    np.testing.assert_array_equal(pruned.get_layer("bn").get_weights()[2], bn.get_weights()[2][[1, 4, 6]])
    assert pruned.get_layer("dw").get_weights()[1].shape == (6,)
    assert pruned.get_layer("head").get_weights()[0].shape[0] == 11 * 11 * 2


def test_unknown_layer_is_a_reported_barrier():
    inputs = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c1")(inputs)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Conv2D(4, 3, name="c2")(x)
    outputs = L.Dense(2)(L.Flatten()(x))
    model = tf.keras.Model(inputs, outputs)
    assert "c1" not in prunable_producers(model) and "c2" in prunable_producers(model)
    assert "LayerNormalization" in barriers(model)["ln"]
    with pytest.raises(ValueError, match="LayerNormalization"):
        prune_model(model, {"c1": [0]})
