"""Engine rules for the blocks mobile CNNs are made of, each on a small synthetic model.

Squeeze-excitation (a gate multiplies the gated tensor), hard-swish written as TF ops,
grouped convolutions, GroupNormalization, nested backbones, custom layers, importance and the rule registry.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tff_prune import accounting, pruning
from tff_prune.accounting import count_params
from tff_prune.models.group_norm import GroupNorm

L = tf.keras.layers


def x_for(model, n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + tuple(model.input_shape[1:])).astype("float32")


def randomize_nested_batchnorm(model, seed=0):
    """Non-trivial BN statistics and affine weights (nested models too), so BN slicing errors show."""
    rng = np.random.default_rng(seed)
    for layer in pruning.leaf_layers(model).values():
        if isinstance(layer, L.BatchNormalization):
            w = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype("float32") for v in w])
    return model


def assert_pruned_equals_masked(model, plan, x, **kwargs):
    pruned = pruning.prune_model(model, plan, **kwargs)
    masked = pruning.mask_model(model, plan, **kwargs)
    out_p, out_m = pruned(x, training=False).numpy(), masked(x, training=False).numpy()
    scale = max(float(np.abs(out_m).max()), 1e-12)
    assert np.abs(out_p - out_m).max() <= 1e-4 * scale
    assert count_params(pruned) == plan.params_after < plan.params_before
    assert np.abs(model(x, training=False).numpy() - out_m).max() > 1e-6 * scale  # the mask changed something
    return pruned


def se_block(gate="sigmoid", merge=L.Multiply):
    inputs = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", name="expand")(inputs)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.Activation("swish", name="expand_act")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.Activation("swish", name="dw_act")(x)
    se = L.GlobalAveragePooling2D(name="se_squeeze")(x)
    se = L.Reshape((1, 1, 12), name="se_reshape")(se)
    se = L.Conv2D(4, 1, activation="swish", name="se_reduce")(se)
    se = L.Conv2D(12, 1, activation=gate, name="se_expand")(se)
    if merge is L.Multiply:
        x = L.Multiply(name="se_excite")([x, se])
    else:
        x = L.Add(name="se_excite")([x, L.UpSampling2D(8, name="se_up")(se)])
    x = L.Conv2D(6, 1, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    return tf.keras.Model(inputs, L.Dense(3, name="head")(L.Flatten()(x)))


def test_squeeze_excitation_gate_couples_with_the_gated_channels():
    model = randomize_nested_batchnorm(se_block())
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {}
    g = graph.group_of("expand")
    assert g.prunable and set(g.producers) == {"expand", "se_expand"}
    assert {"se_excite", "se_reshape", "se_squeeze"} <= set(g.tensors)
    assert set(g.consumers) == {"se_reduce", "project"} and set(g.channel_wise) == {"expand_bn", "dw", "dw_bn"}
    assert graph.group_of("se_reduce").prunable  # the SE bottleneck is a group of its own
    plan = pruning.plan_from_channels(model, {g.id: [0, 5, 11]})
    pruned = assert_pruned_equals_masked(model, plan, x_for(model))
    assert pruned.get_layer("se_reshape").output_shape == (None, 1, 1, 9)
    assert pruned.get_layer("se_expand").filters == 9 and pruned.get_layer("se_reduce").kernel.shape == (1, 1, 9, 4)
    # expand 3*3*3*9+9, BN 4*9, dw 3*3*9+9, dw_bn 4*9, se_reduce 9*4+4, se_expand 4*9+9, project 9*6+6, ...
    removed = 3 * (27 + 1) + 4 * 3 + 3 * (9 + 1) + 4 * 3 + 3 * 4 + 3 * (4 + 1) + 3 * 6
    assert plan.params_before - plan.params_after == removed


def test_a_sigmoid_gate_that_is_added_instead_of_multiplied_is_not_prunable():
    model = se_block(merge=L.Add)
    g = pruning.dependency_graph(model).group_of("expand")
    assert not g.prunable
    assert "'project' reads channels of 'se_excite' that are not 0" in g.reason and "'sigmoid'" in g.reason
    with pytest.raises(pruning.UnsupportedLayerError, match="sigmoid"):
        pruning.plan_from_channels(model, {"expand": [0]})


def hard_swish_block():
    inputs = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    hs = L.ReLU(6.0, name="relu6")(x + 3.0) * (1.0 / 6.0)        # hard-sigmoid: TF ops around a ReLU(6)
    x = L.Multiply(name="hard_swish")([x, hs])                   # hard-swish(x) = x * hard_sigmoid(x)
    x = x * np.linspace(0.5, 2.0, 8).astype("float32")           # a per-channel constant
    x = tf.nn.relu6(x) / 2.0
    y = L.Conv2D(8, 1, name="side")(inputs)
    x = x + y                                                    # a residual written as a TF op
    x = L.Conv2D(5, 1, name="out_conv")(x)
    return tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(x)))


def test_hard_swish_and_element_wise_tf_ops_pass_channels_through():
    model = randomize_nested_batchnorm(hard_swish_block())
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {}
    g = graph.group_of("conv")
    assert g.prunable and set(g.producers) == {"conv", "side"} and g.consumers == ("out_conv",)
    plan = pruning.plan_from_channels(model, {g.id: [1, 6]})
    pruned = assert_pruned_equals_masked(model, plan, x_for(model))
    multiplies = [layer.name for layer in model.layers if getattr(layer, "symbol", "") == "math.multiply"]
    scale = pruned.get_layer(multiplies[1])  # [0] is hard-sigmoid's * (1/6), [1] the per-channel constant
    config = pruned.get_config()
    entry = next(e for e in config["layers"] if e["config"]["name"] == scale.name)
    np.testing.assert_allclose(entry["inbound_nodes"][0][3]["y"],
                               np.delete(np.linspace(0.5, 2.0, 8), [1, 6]), rtol=1e-6)
    # FLOPs of the TF ops: each element-wise op one per output element, relu6 none.
    flops = accounting.layer_flops(model)
    by_symbol = {getattr(layer, "symbol", None): layer.name for layer in model.layers}  # auto names get suffixes
    assert flops[by_symbol["math.add"]] == 8 * 8 * 8 and flops[by_symbol["nn.relu6"]] == 0


def test_a_non_zero_constant_that_reaches_a_consumer_blocks_the_group():
    inputs = tf.keras.Input((4, 4, 3))
    x = L.Conv2D(4, 1, name="conv")(inputs) + 3.0
    model = tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(L.Conv2D(2, 1, name="next")(x))))
    g = pruning.dependency_graph(model).group_of("conv")
    assert not g.prunable and "adds a non-zero constant" in g.reason and "'next' reads" in g.reason


def grouped_block():
    inputs = tf.keras.Input((8, 8, 4))
    skip = L.Conv2D(16, 1, name="stem")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(skip))
    x = L.Conv2D(16, 3, padding="same", groups=4, name="grouped")(x)   # 4 groups of 4 channels
    x = L.ReLU(name="grouped_relu")(L.BatchNormalization(name="grouped_bn")(x))
    x = L.Conv2D(16, 1, name="reduce")(x)
    x = x + skip
    x = L.Conv2D(32, 3, padding="same", groups=16, name="dw_as_conv")(x)  # groups == channels: depthwise
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.Conv2D(6, 1, name="project")(x)
    return tf.keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))


def test_grouped_conv_removes_the_same_index_in_every_group():
    model = randomize_nested_batchnorm(grouped_block())
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {}
    into = graph.group_of("grouped_bn")  # the grouped conv's outputs, tied across its 4 groups
    assert into.channels == 4 and into.producers == ("grouped",)
    np.testing.assert_array_equal(into.producer_positions["grouped"], np.arange(16).reshape(4, 4).T)
    stage = graph.group_of("stem")  # the residual stage: stem + reduce, read in groups by 'grouped'
    assert stage.channels == 4 and set(stage.producers) == {"stem", "reduce"}
    assert set(stage.consumers) == {"grouped", "project"} and "dw_as_conv" in stage.channel_wise
    plan = pruning.plan_from_channels(model, {stage.id: [1], into.id: [0, 3]})
    pruned = assert_pruned_equals_masked(model, plan, x_for(model))
    grouped = pruned.get_layer("grouped")
    assert grouped.groups == 4 and grouped.kernel.shape == (3, 3, 3, 8)  # 3 inputs and 2 outputs per group
    np.testing.assert_array_equal(grouped.kernel.numpy(), model.get_layer("grouped").kernel.numpy()[
        :, :, [0, 2, 3]][..., [1, 2, 5, 6, 9, 10, 13, 14]])
    dw = pruned.get_layer("dw_as_conv")
    assert dw.groups == 12 and dw.filters == 24 and dw.kernel.shape == (3, 3, 1, 24)
    assert pruning.plan(model, pruning.ratio(0.5)).widths_after["grouped"] == 8
    # 2 * H * W * kh * kw * (C_in / groups) * C_out + bias, which the TF profiler cannot count
    assert accounting.layer_flops(model)["grouped"] == 2 * 64 * 9 * 4 * 16 + 64 * 16


def group_norm_block(norm=L.GroupNormalization):
    inputs = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = norm(4, name="gn1")(x)  # 4 groups of 4 channels
    x = L.ReLU(name="relu1")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = norm(2, scale=False, name="gn_dw")(x)  # no gamma: a removed group's zeros stay 0
    x = L.Conv2D(6, 1, name="conv2")(x)
    x = norm(3, center=False, name="gn2")(x)
    return tf.keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))


def randomize_group_norm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.GroupNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype("float32") for v in layer.get_weights()])
    return model


@pytest.mark.parametrize("norm", [L.GroupNormalization, GroupNorm])
def test_group_norm_removes_whole_groups(norm):
    model = randomize_group_norm(group_norm_block(norm))
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {} and pruning.coverage(model) == 1.0
    g = graph.group_of("conv1")  # tied by gn1's groups of 4 and gn_dw's groups of 8: 2 removable units of 8
    assert g.channels == 2 and set(g.channel_wise) == {"gn1", "dw", "gn_dw"}
    np.testing.assert_array_equal(np.sort(g.producer_positions["conv1"], axis=1), np.arange(16).reshape(2, 8))
    assert graph.group_of("conv2").channels == 3  # gn2: 3 groups of 2
    plan = pruning.plan_from_channels(model, {g.id: [0], graph.group_of("conv2").id: [1]})
    pruned = assert_pruned_equals_masked(model, plan, x_for(model))
    gn1, gn2 = pruned.get_layer("gn1"), pruned.get_layer("gn2")
    assert type(gn1) is norm
    assert (gn1.groups, pruned.get_layer("gn_dw").groups, gn2.groups) == (2, 1, 2)
    np.testing.assert_array_equal(gn1.gamma.numpy(), model.get_layer("gn1").gamma.numpy()[8:])
    np.testing.assert_array_equal(gn2.gamma.numpy(), model.get_layer("gn2").gamma.numpy()[[0, 1, 4, 5]])
    # Network slimming's |gamma| sums over each tied unit (gn_dw has no gamma).
    gamma = np.abs(model.get_layer("gn1").gamma.numpy().astype(np.float64))
    np.testing.assert_allclose(pruning.batchnorm_scale_importance(model, graph, g), gamma.reshape(2, 8).sum(axis=1))
    # A ratio plan can only take whole groups: half of conv1's two units of 8.
    assert pruning.plan(model, pruning.ratio(0.5)).widths_after["conv1"] == 8


def test_group_norm_on_another_axis_is_a_barrier():
    inputs = tf.keras.Input((8, 8, 4))
    x = L.GroupNormalization(2, axis=1, name="gn_rows")(L.Conv2D(4, 1, name="conv")(inputs))
    model = tf.keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    assert "normalizes groups on axis 1, not the channel axis" in pruning.dependency_graph(model).barriers["gn_rows"]


@pytest.mark.parametrize("norm", [L.GroupNormalization, GroupNorm])
@pytest.mark.parametrize("scale,center", [(True, True), (True, False), (False, True), (False, False)])
def test_group_norm_flops_agree_with_the_tf_profiler(norm, scale, center):
    from tests.conftest import profiler_flops
    inputs = tf.keras.Input((5, 3, 24))
    model = tf.keras.Model(inputs, norm(3, scale=scale, center=center)(inputs))
    assert accounting.count_flops(model) == profiler_flops(model)


def test_group_norm_layer_matches_keras_and_converts_to_tflite():
    from mobile import convert

    model = randomize_group_norm(group_norm_block(GroupNorm))
    keras_gn = group_norm_block()
    keras_gn.set_weights(model.get_weights())
    x = x_for(model, n=3)
    np.testing.assert_array_equal(model(x).numpy(), keras_gn(x).numpy())
    # Keras' own layer converts to a BROADCAST_TO the interpreter rejects; GroupNorm runs, batch 1 and 3.
    tflite = convert.convert(model, "float32")
    for n in (1, 3):
        np.testing.assert_allclose(convert.run_tflite(tflite, x[:n]), model(x[:n]).numpy(), rtol=1e-4, atol=1e-5)


def test_a_saved_group_norm_model_loads_in_the_convert_cli(tmp_path):
    model = randomize_group_norm(group_norm_block(GroupNorm))
    path = str(tmp_path / "gn.keras")
    model.save(path)
    code = ("import sys, numpy as np\nfrom mobile.cli.convert import load_keras_model\n"
            "m = load_keras_model(sys.argv[1])\nprint(type(m.get_layer('gn1')).__name__, m.count_params())\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, cwd=root, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["GroupNorm", str(model.count_params())]


def backbone():
    inputs = tf.keras.Input((8, 8, 3), name="backbone_in")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(6.0, name="relu1")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(12, 1, name="conv2")(x)
    return tf.keras.Model(inputs, L.ReLU(name="relu2")(x), name="backbone")


def test_nested_backbone_is_walked_into_and_stays_nested():
    base = backbone()
    stem = tf.keras.Sequential([L.Conv2D(6, 1, name="adapter"), L.ReLU(name="adapter_relu")], name="stem")
    inputs = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(3, 1, name="pre")(inputs)
    x = base(x)
    x = stem(x)
    model = tf.keras.Model(inputs, L.Dense(4, name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    randomize_nested_batchnorm(model)
    graph = pruning.dependency_graph(model)
    assert graph.barriers == {} and pruning.coverage(model) == 1.0
    g = graph.group_of("backbone/conv1")
    assert g.producers == ("backbone/conv1",) and set(g.channel_wise) == {"backbone/bn1", "backbone/dw"}
    assert g.consumers == ("backbone/conv2",)
    assert graph.group_of("backbone/conv2").consumers == ("stem/adapter",)
    assert graph.group_of("pre").consumers == ("backbone/conv1",)
    plan = pruning.plan_from_channels(model, {"backbone/conv1": [2, 3], "backbone/conv2": [0], "stem/adapter": [5],
                                              "pre": [1]})
    pruned = assert_pruned_equals_masked(model, plan, x_for(model))
    assert isinstance(pruned.get_layer("backbone"), tf.keras.Model)  # the nesting is kept
    assert isinstance(pruned.get_layer("stem"), tf.keras.Sequential)
    assert pruned.get_layer("backbone").get_layer("conv1").kernel.shape == (3, 3, 2, 6)
    assert pruned.get_layer("stem").get_layer("adapter").kernel.shape == (1, 1, 11, 5)
    assert accounting.conv_widths(pruned)["backbone/conv2"] == 11
    assert set(accounting.layer_flops(model)) >= {"backbone/conv1", "stem/adapter"}


def test_a_nested_model_called_twice_is_a_barrier():
    base = backbone()
    inputs = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inputs, L.Dense(2)(L.Flatten()(L.Add()([base(inputs), base(inputs)]))))
    assert "called more than once" in pruning.dependency_graph(model).barriers["backbone"]


class ChannelScale(L.Layer):
    """A custom per-channel scale ``y = x * gamma`` (like ConvNeXt's LayerScale), not registered with Keras."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def scaled_model():
    inputs = tf.keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, name="conv")(inputs)
    x = ChannelScale(name="scale")(x)
    x = L.Conv2D(4, 1, name="next")(x)
    model = tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(x)))
    model.get_layer("scale").set_weights([np.linspace(0.5, 1.5, 5).astype("float32")])
    return model


def test_custom_layers_are_barriers_by_name_and_rebuild_without_custom_objects():
    model = scaled_model()
    graph = pruning.dependency_graph(model)
    assert "'scale' (ChannelScale) is a layer type the pruning engine does not understand" in graph.barriers["scale"]
    plan = pruning.plan(model, pruning.ratio(0.5))
    assert plan.widths_after["conv"] == 5 and plan.widths_after["next"] == 2
    pruning.prune_model(model, plan)  # rebuilt from config although ChannelScale is not a registered Keras class
    with pytest.raises(pruning.UnsupportedLayerError, match="ChannelScale"):
        pruning.plan_from_keep(model, {"conv": [0, 1]})


def test_a_registered_rule_and_slicer_make_a_custom_layer_prunable():
    def rule(ctx):
        ctx.identity()
        ctx.weighted = True  # 0 * gamma = 0: zeros pass through

    def slice_fn(layer, in_keep, out_keep):
        return [layer.get_weights()[0][in_keep]]

    pruning.register_layer_rule(ChannelScale, rule)
    pruning.register_layer_slicer(ChannelScale, slice_fn, lambda layer, in_keep, out_keep: None)
    try:
        model = scaled_model()
        g = pruning.dependency_graph(model).group_of("conv")
        assert g.prunable and g.channel_wise == ("scale",)
        pruned = assert_pruned_equals_masked(model, pruning.plan_from_keep(model, {"conv": [0, 2, 4]}), x_for(model))
        np.testing.assert_allclose(pruned.get_layer("scale").get_weights()[0], [0.5, 1.0, 1.5])
    finally:
        from tff_prune.pruning import slicing
        pruning.LAYER_RULES.pop(ChannelScale)
        slicing.SLICERS.pop(ChannelScale)


def test_importance_batchnorm_scale_and_callables():
    model = randomize_nested_batchnorm(se_block(), seed=3)
    graph = pruning.dependency_graph(model)
    g = graph.group_of("expand")
    gammas = np.abs(model.get_layer("expand_bn").gamma.numpy()) + np.abs(model.get_layer("dw_bn").gamma.numpy())
    np.testing.assert_allclose(pruning.batchnorm_scale_importance(model, graph, g), gammas, rtol=1e-6)
    np.testing.assert_allclose(pruning.group_importance(model, g),
                               pruning.filter_l1(model.get_layer("expand"))
                               + pruning.filter_l1(model.get_layer("se_expand")))
    slim = pruning.plan(model, pruning.ratio(0.25), importance="bn_scale")
    chosen = next(p for p in slim.groups if p.id == g.id).pruned_channels
    np.testing.assert_array_equal(chosen, np.sort(np.argsort(gammas, kind="stable")[:3]))
    assert "importance=bn_scale" in slim.criterion
    reverse = pruning.plan(model, pruning.ratio(0.25), importance=lambda m, gr, grp: -np.arange(grp.channels) * 1.0)
    np.testing.assert_array_equal(next(p for p in reverse.groups if p.id == g.id).pruned_channels, [9, 10, 11])
    with pytest.raises(ValueError, match="must be 12 finite floats"):
        pruning.plan(model, pruning.ratio(0.25), importance=lambda m, gr, grp: np.ones(3))
    with pytest.raises(ValueError, match="importance must be one of"):
        pruning.plan(model, pruning.ratio(0.25), importance="taylor")
