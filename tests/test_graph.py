"""The dependency-group engine: groups, plans, and pruned == masked on every architecture here."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import profiler_flops
from tff_prune import accounting, pruning
from tff_prune.accounting import count_params
from tff_prune.models import get_model

L = tf.keras.layers
PAPER_MODELS = [(m, d) for m in ("cnn", "resnet", "inception") for d in ("femnist", "celeba")]


def randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics and affine weights, so BN slicing errors change the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in v.name
                               else rng.normal(0, 0.3, w.shape).astype("float32") + (1 if "gamma" in v.name else 0)
                               for v, w in zip(layer.weights, layer.get_weights())])
    return model


def images_for(dataset, real_images, celeba_images):
    return real_images[:64] if dataset == "femnist" else celeba_images


def assert_equivalent(model, plan, x):
    pruned = pruning.prune_model(model, plan)
    masked = pruning.mask_model(model, plan)
    out_p, out_m = pruned(x, training=False).numpy(), masked(x, training=False).numpy()
    scale = max(float(np.abs(out_m).max()), 1e-12)
    assert np.abs(out_p - out_m).max() <= 1e-4 * scale
    assert count_params(pruned) == plan.params_after < plan.params_before
    # The masking changed the function: a no-op mask (or prune) would not pass this.
    assert np.abs(model(x, training=False).numpy() - out_m).max() > 1e-6 * scale
    return pruned


@pytest.mark.parametrize("name, dataset", PAPER_MODELS)
def test_paper_models_pruned_equal_masked_on_real_images(name, dataset, real_images, celeba_images):
    model = randomize_batchnorm(get_model(name, dataset, seed=3))
    x = images_for(dataset, real_images, celeba_images)
    for plan in (pruning.plan(model, pruning.band(1.0)), pruning.plan(model, pruning.ratio(0.4), round_to=4)):
        assert plan.pruned, "the plan must remove something for this test to mean anything"
        assert_equivalent(model, plan, x)


def test_resnet_residual_partners_form_one_group():
    model = get_model("resnet", "celeba")
    graph = pruning.dependency_graph(model)
    g = graph.group_of("block1_conv2")
    assert g is graph.group_of("block1_shortcut") and g.prunable
    assert set(g.producers) == {"block1_conv2", "block1_shortcut"}
    assert set(g.channel_wise) == {"block1_bn2", "block1_shortcut_bn"}
    assert set(g.consumers) == {"block2_conv1", "block2_shortcut"}
    assert {"block1_add", "block1_out"} <= set(g.tensors)
    last = graph.group_of("block2_conv2")
    assert last.consumers == ("classifier",) and "flatten" in last.tensors
    # One decision removes the channel from every coupled tensor.
    plan = pruning.plan_from_channels(model, {g.id: [3, 7]})
    pruned = pruning.prune_model(model, plan)
    for name in ("block1_conv2", "block1_shortcut"):
        assert pruned.get_layer(name).filters == 14
    for name in ("block2_conv1", "block2_shortcut"):
        assert pruned.get_layer(name).kernel.shape[2] == 14


def test_group_importance_sums_the_producers_filter_norms():
    model = get_model("resnet", "celeba", seed=1)
    g = pruning.dependency_graph(model).group_of("block2_conv2")
    expected = (pruning.filter_l1(model.get_layer("block2_conv2"))
                + pruning.filter_l1(model.get_layer("block2_shortcut")))
    np.testing.assert_allclose(pruning.group_importance(model, g), expected)
    np.testing.assert_allclose(pruning.group_importance(model, g, "max"),
                               np.maximum(pruning.filter_l1(model.get_layer("block2_conv2")),
                                          pruning.filter_l1(model.get_layer("block2_shortcut"))))


def test_inception_branch_prunes_its_concat_slice_in_every_consumer():
    model = get_model("inception", "femnist", seed=2)
    graph = pruning.dependency_graph(model)
    g = graph.group_of("mixed1_3x3")
    assert g.producers == ("mixed1_3x3",) and set(g.consumers) == {"mixed2_1x1", "mixed2_3x3", "mixed2_5x5"}
    plan = pruning.plan_from_keep(model, {"mixed1_3x3": [0, 5, 9]})
    pruned = pruning.prune_model(model, plan)
    # mixed1 = concat(1x1: 16, 3x3: 16, 5x5: 16): the 3x3 slice is input channels 16..31 of the next convs.
    kept_inputs = np.r_[0:16, 16 + np.array([0, 5, 9]), 32:48]
    for name in g.consumers:
        np.testing.assert_array_equal(pruned.get_layer(name).get_weights()[0],
                                      model.get_layer(name).get_weights()[0][:, :, kept_inputs, :])
    np.testing.assert_array_equal(pruned.get_layer("mixed1_3x3").get_weights()[1],
                                  model.get_layer("mixed1_3x3").get_weights()[1][[0, 5, 9]])


def test_batchnorm_statistics_of_kept_channels_are_carried_over():
    model = randomize_batchnorm(get_model("resnet", "femnist", seed=4), seed=5)
    g = pruning.dependency_graph(model).group_of("stem_conv")
    removed = [0, 2, 3, 11]
    pruned = pruning.prune_model(model, pruning.plan_from_channels(model, {g.id: removed}))
    kept = np.setdiff1d(np.arange(16), removed)
    old, new = model.get_layer("stem_bn"), pruned.get_layer("stem_bn")
    for v_old, v_new in zip(old.weights, new.weights):
        assert v_old.name.split("/")[-1] == v_new.name.split("/")[-1]
        np.testing.assert_array_equal(v_new.numpy(), v_old.numpy()[kept])
    assert {v.name.split("/")[-1].split(":")[0] for v in new.weights} >= {"moving_mean", "moving_variance"}


@pytest.mark.parametrize("builder", [
    lambda: tf.keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10),
    lambda: tf.keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10),
    lambda: tf.keras.applications.DenseNet121(input_shape=(32, 32, 3), weights=None, classes=10),
], ids=["mobilenetv2-depthwise-residual", "resnet50-identity-residual", "densenet121-concat"])
def test_keras_applications_pruned_equal_masked(builder):
    model = randomize_batchnorm(builder())
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {}
    assert sum(g.prunable for g in graph.groups) == len(graph.groups) - 2  # all but the input and the output
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    plan = pruning.plan(model, pruning.ratio(0.3), round_to=4)
    assert all(g.kept % 4 == 0 or g.kept == g.channels for g in plan.groups)
    pruned = assert_equivalent(model, plan, x)
    # FLOPs accounting covers every layer type here, in the TF profiler's convention.
    assert accounting.count_flops(model) == profiler_flops(model)
    assert accounting.count_flops(pruned) == profiler_flops(pruned)


def test_sequential_models_and_separable_convs():
    model = tf.keras.Sequential([
        tf.keras.Input((16, 16, 3)), L.SeparableConv2D(12, 3, depth_multiplier=2, name="sep1"),
        L.BatchNormalization(name="bn1"), L.Activation("swish"), L.SeparableConv2D(10, 3, name="sep2"),
        L.GlobalMaxPooling2D(), L.Dense(7, activation="relu", name="fc"), L.Dense(3, name="out")])
    randomize_batchnorm(model)
    groups = {g.producers: g for g in pruning.dependency_graph(model).groups if g.prunable}
    assert set(groups) == {("sep1",), ("sep2",), ("fc",)}
    plan = pruning.plan_from_channels(model, {"sep1": [1, 4], "sep2": [0], "fc": [2, 3, 6]})
    pruned = assert_equivalent(model, plan, np.random.default_rng(1).random((4, 16, 16, 3)).astype("float32"))
    assert pruned.get_layer("sep2").depthwise_kernel.shape[2] == 10
    assert pruned.get_layer("sep2").pointwise_kernel.shape[2] == 10 and pruned.get_layer("fc").units == 4


def test_dense_groups_are_left_alone_unless_asked():
    model = get_model("inception", "celeba", seed=0)
    assert pruning.plan(model, pruning.ratio(0.5)).widths_after["fc"] == 50
    assert pruning.plan(model, pruning.ratio(0.5), include_dense=True).widths_after["fc"] == 25


def test_barriers_are_reported_and_block_only_their_groups():
    inputs = tf.keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    r = L.Reshape((8, 16, 2), name="reshape")(a)  # changes the channel axis (one that keeps it passes)
    b = L.Conv2D(6, 3, padding="same", activation="sigmoid", name="b")(r)
    c = L.Conv2D(5, 3, name="c")(b)
    d = L.Lambda(lambda t: t * 2.0, name="double")(c)
    e = L.Conv2D(3, 3, name="e")(d)
    f = L.Conv2D(8, 1, name="f")(e)
    out = L.Dense(2, name="head")(L.Flatten()(f))
    model = tf.keras.Model(inputs, out)
    graph = pruning.dependency_graph(model)
    assert "Reshape" in graph.barriers["reshape"] and "Lambda" in graph.barriers["double"]
    reasons = {g.producers: g.reason for g in graph.groups}
    assert "reshape" in reasons[("a",)] and "'sigmoid'" in reasons[("b",)] and "double" in reasons[("c",)]
    assert reasons[("e",)] == reasons[("f",)] == ""  # e reads the Lambda's output, but its own filters are free
    with pytest.raises(pruning.UnsupportedLayerError, match="Reshape"):
        pruning.plan_from_keep(model, {"a": [0]})
    with pytest.raises(pruning.UnsupportedLayerError, match="sigmoid"):
        pruning.plan_from_keep(model, {"b": [0]})
    plan = pruning.plan(model, pruning.ratio(0.5))
    assert plan.widths_after == {"a": 4, "b": 6, "c": 5, "e": 2, "f": 4, "head": 2}


def test_subclassed_and_shared_layers_are_refused():
    class Sub(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.c = L.Conv2D(2, 1)

        def call(self, x):
            return self.c(x)

    sub = Sub()
    sub(tf.zeros((1, 4, 4, 1)))
    with pytest.raises(pruning.UnsupportedLayerError, match="subclassed"):
        pruning.dependency_graph(sub)
    shared = L.Conv2D(3, 1, name="shared")
    inputs = tf.keras.Input((4, 4, 3))
    out = L.Flatten()(shared(shared(inputs)))
    graph = pruning.dependency_graph(tf.keras.Model(inputs, L.Dense(2)(out)))
    assert "shared (called 2 times)" in graph.barriers["shared"]


@pytest.mark.parametrize("kwargs, message", [
    ({"round_to": 0}, "round_to"), ({"min_channels": 0}, "min_channels"), ({"aggregate": "median"}, "aggregate"),
])
def test_bad_plan_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pruning.plan(get_model("cnn", "femnist"), pruning.band(2.0), **kwargs)


def test_criteria_validate_their_argument():
    with pytest.raises(ValueError, match="k > 0"):
        pruning.band(0)
    with pytest.raises(ValueError, match=r"0 <= r < 1"):
        pruning.ratio(1.0)


def test_ratio_round_to_and_min_channels():
    model = get_model("cnn", "femnist", seed=6)
    norms = pruning.filter_l1(model.get_layer("conv2"))
    plan = pruning.plan(model, pruning.ratio(0.25))
    g = next(g for g in plan.groups if g.producers == ("conv2",))
    np.testing.assert_array_equal(g.pruned_channels, np.sort(np.argsort(norms)[:16]))
    # round_to 8, up: 64 - floor(0.3 * 64) = 45 kept -> 48, putting back the strongest removed channels.
    up = pruning.plan(model, pruning.ratio(0.3), round_to=8, round_mode="up")
    g8 = next(g for g in up.groups if g.producers == ("conv2",))
    assert g8.kept == 48
    np.testing.assert_array_equal(g8.pruned_channels, np.sort(np.argsort(norms)[:16]))
    # the default (Torch-Pruning's round_to): 45 kept -> 40, the weakest kept ones go too.
    g8 = next(g for g in pruning.plan(model, pruning.ratio(0.3), round_to=8).groups if g.producers == ("conv2",))
    assert g8.kept == 40
    np.testing.assert_array_equal(g8.pruned_channels, np.sort(np.argsort(norms, kind="stable")[:24]))
    tiny = pruning.plan(model, pruning.ratio(0.99), min_channels=5)
    assert tiny.widths_after == {"conv1": 5, "conv2": 5, "classifier": 62}


def test_round_to_keeps_the_paper_cnn_at_multiples_of_eight():
    model = get_model("cnn", "femnist", seed=7)
    for mode in ("up", "down"):
        plan = pruning.plan(model, pruning.band(1.0), round_to=8, round_mode=mode)
        assert all(w % 8 == 0 for name, w in plan.widths_after.items() if name != "classifier")
        unrounded = pruning.plan(model, pruning.band(1.0)).params_after
        assert unrounded <= plan.params_after if mode == "up" else unrounded >= plan.params_after


def test_round_down_turns_a_small_band_prune_into_a_multiple_of_eight():
    model = get_model("cnn", "femnist", seed=7)
    band = pruning.plan(model, pruning.band(2.2))
    removed = {g.producers[0]: len(g.pruned_channels) for g in band.groups}
    assert 0 < removed["conv2"] < 8  # the paper's band removes a few outliers per round
    up = pruning.plan(model, pruning.band(2.2), round_to=8, round_mode="up")
    assert up.widths_after["conv2"] == 64  # rounding up puts them all back
    down = pruning.plan(model, pruning.band(2.2), round_to=8)  # the default: the README's example prunes
    assert down.widths_after["conv2"] == 56 and "(down)" in down.criterion
    g = next(g for g in down.groups if g.producers == ("conv2",))
    b = next(g for g in band.groups if g.producers == ("conv2",))
    assert set(b.pruned_channels) <= set(g.pruned_channels)  # the band's choice, plus the weakest kept filters
    norms = pruning.filter_l1(model.get_layer("conv2"))
    extra = sorted(set(g.pruned_channels) - set(b.pruned_channels))
    kept = sorted(set(range(64)) - set(g.pruned_channels))
    assert norms[extra].max() <= norms[kept].min()
    # groups the criterion leaves alone keep their width, multiple or not; min_channels rounds up
    assert pruning.plan(model, pruning.band(50.0), round_to=8, round_mode="down").widths_after == \
        {"conv1": 32, "conv2": 64, "classifier": 62}
    odd = get_model("cnn", "femnist", widths=(29, 45), seed=3)  # ratio(0) + down trims only non-multiples
    trim = pruning.plan(odd, pruning.ratio(0.0), round_to=8, round_mode="down")
    assert trim.widths_after == {"conv1": 24, "conv2": 40, "classifier": 62}
    g1 = next(g for g in trim.groups if g.producers == ("conv1",))
    n1 = pruning.filter_l1(odd.get_layer("conv1"))
    np.testing.assert_array_equal(g1.pruned_channels, np.sort(np.argsort(n1, kind="stable")[:5]))
    tiny = pruning.plan(model, pruning.ratio(0.99), round_to=8, round_mode="down", min_channels=9)
    assert tiny.widths_after["conv1"] == 16 and tiny.widths_after["conv2"] == 16
    with pytest.raises(ValueError, match="round_mode"):
        pruning.plan(model, pruning.band(2.2), round_to=8, round_mode="nearest")


def test_band_on_single_conv_groups_is_the_papers_per_layer_band():
    model = get_model("cnn", "celeba", seed=8)
    plan = pruning.plan(model, pruning.band(1.5))
    for g in plan.groups:
        (name,) = g.producers
        keep = pruning.band_keep_mask(pruning.filter_l1(model.get_layer(name)), 1.5)
        np.testing.assert_array_equal(g.kept_filters(name), np.flatnonzero(keep))


def test_plan_for_another_model_is_refused():
    a, b = get_model("cnn", "femnist"), get_model("cnn", "femnist", widths=(16, 64))
    with pytest.raises(ValueError, match="different model"):
        pruning.prune_model(b, pruning.plan(a, pruning.band(2.0)))


def test_the_readme_example_with_round_to_8_prunes():
    model = get_model("resnet", "celeba", seed=0)
    plan = pruning.plan(model, pruning.band(2.0), round_to=8)  # kept counts round down (Torch-Pruning's round_to)
    assert not plan.is_empty and all(g.kept % 8 == 0 for g in plan.groups)
    assert count_params(pruning.prune_model(model, plan)) == plan.params_after < plan.params_before
