"""The mobile CNN families people deploy, as Keras Applications (weights=None, 32x32 inputs).

Coverage (share of Conv/Separable/Dense output channels in prunable groups, the output layer
left out), pruned == masked within 1e-4 relative with exact parameter counts, and FLOPs against
tf.compat.v1.profiler. Each model is built once per module. (That the masks change the outputs
at all is checked on the small blocks of test_mobile_blocks.py, to keep this file fast.)
"""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import profiler_flops
from tff_prune import accounting, pruning
from tff_prune.accounting import count_params
from tff_prune.models.mobile import with_group_norm

A = tf.keras.applications
L = tf.keras.layers
SHAPE = (32, 32, 3)


def nested_mobilenetv2():
    """The transfer-learning pattern: a MobileNetV2 backbone used as one layer of a head model."""
    base = A.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=None)
    inputs = tf.keras.Input(SHAPE)
    x = L.GlobalAveragePooling2D(name="pool")(base(inputs))
    x = L.Dropout(0.2, name="drop")(x)
    return tf.keras.Model(inputs, L.Dense(5, activation="softmax", name="head")(x))


BUILDERS = {
    "efficientnetb0": lambda: A.EfficientNetB0(input_shape=SHAPE, weights=None, classes=5),
    "efficientnetv2b0": lambda: A.EfficientNetV2B0(input_shape=SHAPE, weights=None, classes=5),
    "mobilenetv3small": lambda: A.MobileNetV3Small(input_shape=SHAPE, weights=None, classes=5),
    "mobilenetv3small_gn": lambda: with_group_norm(A.MobileNetV3Small(input_shape=SHAPE, weights=None, classes=5)),
    "nested_mobilenetv2": nested_mobilenetv2,
    "regnetx002": lambda: A.RegNetX002(input_shape=SHAPE, weights=None, classes=5),
}
TARGET = {"efficientnetb0": 0.9, "efficientnetv2b0": 0.9, "mobilenetv3small": 0.9, "nested_mobilenetv2": 0.9,
          "regnetx002": 0.8, "mobilenetv3small_gn": 0.9}
_BUILT = {}


def built(name):
    """(model with randomized BatchNormalization, its dependency graph), built once."""
    if name not in _BUILT:
        model = BUILDERS[name]()
        if name == "efficientnetv2b0":  # only its graph is needed
            _BUILT[name] = (model, pruning.dependency_graph(model))
            return _BUILT[name]
        rng = np.random.default_rng(0)
        for layer in pruning.leaf_layers(model).values():
            if isinstance(layer, (L.BatchNormalization, L.GroupNormalization)):
                layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
        _BUILT[name] = (model, pruning.dependency_graph(model))
    return _BUILT[name]


@pytest.fixture(scope="module", autouse=True)
def _release():
    yield
    _BUILT.clear()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_coverage(name):
    model, graph = built(name)
    assert pruning.coverage(model, graph) >= TARGET[name]
    assert graph.barriers == {}


# EfficientNetV2B0 (same blocks as B0 plus fused MBConv) is left out here to keep the file fast.
@pytest.mark.parametrize("name", ["efficientnetb0", "mobilenetv3small", "nested_mobilenetv2", "regnetx002",
                                  "mobilenetv3small_gn"])
def test_pruned_equals_masked(name):
    model, graph = built(name)
    plan = pruning.plan(model, pruning.ratio(0.3), round_to=8)
    assert all(g.kept % 8 == 0 for g in plan.groups if len(g.pruned_channels))
    pruned = pruning.prune_model(model, plan)
    masked = pruning.mask_model(model, plan)
    x = np.random.default_rng(1).uniform(0, 255, (1,) + SHAPE).astype("float32")
    out_p, out_m = pruned(x, training=False).numpy(), masked(x, training=False).numpy()
    assert np.abs(out_p - out_m).max() <= 1e-4 * float(np.abs(out_m).max())
    assert count_params(pruned) == plan.params_after < 0.8 * plan.params_before
    if name == "nested_mobilenetv2":
        assert isinstance(pruned.get_layer("mobilenetv2_0.35_32"), tf.keras.Model)  # still nested
    _BUILT[name + "_pruned"] = pruned


def test_squeeze_excitation_of_efficientnet_is_one_group_with_its_block():
    model, graph = built("efficientnetb0")
    g = graph.group_of("block2a_expand_conv")
    assert g.prunable and set(g.producers) == {"block2a_expand_conv", "block2a_se_expand"}
    assert {"block2a_se_reshape", "block2a_se_excite"} <= set(g.tensors)
    assert set(g.consumers) == {"block2a_se_reduce", "block2a_project_conv"}


def test_mobilenetv3_hard_swish_tf_ops_pass_channels_through():
    model, graph = built("mobilenetv3small")
    g = graph.group_of("expanded_conv_3/expand")
    assert g.prunable and "expanded_conv_3/squeeze_excite/Conv_1" in g.producers
    kinds = {type(graph.layers[t]).__name__ for t in g.tensors if t in graph.layers}
    assert {"TFOpLambda", "Multiply", "ReLU"} <= kinds  # hard-swish: x * ReLU6(x + 3) * (1/6)


def test_regnet_grouped_convs_keep_their_groups():
    model, graph = built("regnetx002")
    layer = model.get_layer("regnetx002_Stage_0_XBlock_0_conv_3x3")
    assert layer.groups == 3 and layer.filters == 24
    g = graph.group_of("regnetx002_Stage_0_XBlock_0_conv_3x3")
    assert g.channels == 8 and g.producer_positions["regnetx002_Stage_0_XBlock_0_conv_3x3"].shape == (8, 3)
    plan = pruning.plan(model, pruning.ratio(0.5))
    assert plan.widths_after["regnetx002_Stage_0_XBlock_0_conv_3x3"] == 12


@pytest.mark.parametrize("name", ["efficientnetb0", "mobilenetv3small", "mobilenetv3small_gn"])
def test_flops_agree_with_the_tf_profiler(name):
    model, _ = built(name)
    assert accounting.count_flops(model) == profiler_flops(model)
    pruned = _BUILT.get(name + "_pruned") or pruning.prune_model(model, pruning.plan(model, pruning.ratio(0.3)))
    assert accounting.count_flops(pruned) == profiler_flops(pruned) < accounting.count_flops(model)


def test_convnext_rebuilds_with_its_custom_layers():
    model = A.ConvNeXtTiny(input_shape=SHAPE, weights=None, classes=5)
    graph = pruning.dependency_graph(model)
    assert "(LayerScale) is a layer type the pruning engine does not understand" in \
        graph.barriers["convnext_tiny_stage_0_block_0_layer_scale"]
    assert "(LayerNormalization)" in graph.barriers["convnext_tiny_stage_0_block_0_layernorm"]
    g = graph.group_of("convnext_tiny_stage_0_block_0_pointwise_conv_1")  # the block's MLP hidden units
    assert g.prunable and g.consumers == ("convnext_tiny_stage_0_block_0_pointwise_conv_2",)
    plan = pruning.plan_from_channels(model, {g.id: np.arange(0, 384, 3)})
    pruned = pruning.prune_model(model, plan)  # used to fail: from_config without ConvNeXt's custom layers
    assert count_params(pruned) == plan.params_after == plan.params_before - 128 * (96 + 1 + 96)
    assert type(pruned.get_layer("convnext_tiny_stage_0_block_0_layer_scale")).__name__ == "LayerScale"
    # Dense on a 4-D input counts every pixel: 2 * 8 * 8 * 96 * 384 + the bias per output element.
    assert accounting.layer_flops(model)["convnext_tiny_stage_0_block_0_pointwise_conv_1"] == \
        2 * 64 * 96 * 384 + 64 * 384
