"""The paper's architectures: exact parameter counts and FLOPs (paper notebooks and TF profiler)."""

import numpy as np
import pytest

from tests.conftest import profiler_flops
from tff_prune import accounting, pruning
from tff_prune.models import get_model

# Authors' public notebooks (issue 6 table): parameters and TF-profiler FLOPs of the full models.
PAPER = {
    ("cnn", "femnist"): (56_126, 7_529_588),
    ("cnn", "celeba"): (80_930, 152_485_804),
    ("resnet", "celeba"): (30_626, 5_234_332),
    ("resnet", "femnist"): (33_214, None),
    ("inception", "celeba"): (243_752, 324_044_726),
    ("inception", "femnist"): (246_236, 31_010_894),
}


@pytest.mark.parametrize("name, dataset", sorted(PAPER))
def test_parameters_and_flops_match_the_paper_and_the_profiler(name, dataset):
    model = get_model(name, dataset, seed=0)
    params, flops = PAPER[(name, dataset)]
    assert accounting.count_params(model) == params
    if flops is not None:
        assert accounting.count_flops(model) == flops
    assert accounting.count_flops(model) == profiler_flops(model)
    # Pruned through coupled groups: accounting still agrees with the profiler.
    pruned = pruning.prune_model(model, pruning.plan(model, pruning.ratio(0.45), round_to=2))
    assert accounting.count_flops(pruned) == profiler_flops(pruned) < accounting.count_flops(model)


def test_celeba_cnn_parameters_follow_its_formula_at_any_widths():
    # 5x5 convs (3 input channels first), 84 -> 42 -> 21 -> 10 -> 5 after four pools, Flatten 5*5*w4 -> 2.
    def celeba_cnn_params(w):
        convs = sum(25 * a * b + b for a, b in zip((3,) + tuple(w[:-1]), w))
        return convs + 25 * w[-1] * 2 + 2
    for widths in [(32, 32, 32, 32), (7, 9, 11, 5), (1, 1, 1, 1)]:
        model = get_model("cnn", "celeba", widths=widths)
        assert accounting.count_params(model) == celeba_cnn_params(widths)


@pytest.mark.parametrize("name, widths", [("cnn", (0, 2)), ("resnet", (16, 32)), ("inception", (32,) * 8)])
def test_bad_widths_are_rejected(name, widths):
    with pytest.raises(ValueError, match="positive"):
        get_model(name, "femnist", widths=widths)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown model .vgg."):
        get_model("vgg", "femnist")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        get_model("cnn", "cifar")


def test_seeded_models_are_reproducible():
    a, b = get_model("inception", "celeba", seed=5), get_model("inception", "celeba", seed=5)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name, params, flops", [("mobilenetv2", 412_770, 19_027_204),
                                                 ("mobilenetv3small", 1_532_018, 21_300_956)])
def test_keras_mobile_models_build_for_celeba_and_plan(name, params, flops):
    model = get_model(name, "celeba", seed=0)
    assert model.input_shape == (None, 84, 84, 3) and model.output_shape == (None, 2)
    assert accounting.count_params(model) == params and accounting.count_flops(model) == flops
    assert pruning.coverage(model) > 0.99
    plan = pruning.plan(model, pruning.band(2.0), round_to=8)  # the README's example: rounds down, so it prunes
    assert plan.params_after < plan.params_before
    assert all(g.kept % 8 == 0 for g in plan.groups if len(g.pruned_channels))


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv3small"])
def test_keras_mobile_models_bn_statistics_follow_short_local_training(name):
    """BatchNormalization momentum 0.9 (Keras: 0.999), kept by a pruned copy, and used by a training step."""
    import tensorflow as tf

    from tff_prune.models.mobile import BN_MOMENTUM

    model = get_model(name, "celeba", seed=0)
    bns = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert bns and {layer.momentum for layer in bns} == {BN_MOMENTUM} == {0.9}
    pruned = pruning.prune_model(model, pruning.plan(model, pruning.ratio(0.25), round_to=8))
    assert {layer.momentum for layer in pruned.layers
            if isinstance(layer, tf.keras.layers.BatchNormalization)} == {0.9}
    first = bns[0]
    x = np.random.default_rng(0).uniform(size=(4, 84, 84, 3)).astype("float32")
    model(x, training=True)
    inputs = tf.keras.Model(model.inputs, first.input)(x)
    batch_mean = tf.reduce_mean(inputs, axis=(0, 1, 2)).numpy()
    np.testing.assert_allclose(first.moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv3small"])
def test_group_norm_variants_replace_every_batchnorm(name):
    import tensorflow as tf

    L = tf.keras.layers
    bn_model, model = get_model(name, "celeba", seed=0), get_model(name + "_gn", "celeba", seed=0)
    bns = [layer for layer in bn_model.layers if isinstance(layer, L.BatchNormalization)]
    gns = [layer for layer in model.layers if isinstance(layer, L.GroupNormalization)]
    assert not any(isinstance(layer, L.BatchNormalization) for layer in model.layers)
    assert [layer.name for layer in gns] == [layer.name for layer in bns]
    assert all(gn.groups * 8 == bn.gamma.shape[-1] and gn.epsilon == bn.epsilon for gn, bn in zip(gns, bns))
    # The same weights but the moving mean and variance, which GroupNormalization does not have.
    moving = sum(2 * bn.gamma.shape[-1] for bn in bns)
    assert accounting.count_params(model) == accounting.count_params(bn_model) - moving
    assert pruning.coverage(model) == 1.0
    plan = pruning.plan(model, pruning.band(2.0))
    pruned = pruning.prune_model(model, plan)
    assert accounting.count_params(pruned) == plan.params_after < plan.params_before
    kept = [layer for layer in pruned.layers if isinstance(layer, L.GroupNormalization)]
    assert all(layer.gamma.shape[-1] == 8 * layer.groups for layer in kept)  # whole groups of 8 went
    assert sum(layer.groups for layer in kept) < sum(layer.groups for layer in gns)


def test_keras_mobile_models_pad_femnist_to_32():
    model = get_model("mobilenetv2", "femnist", seed=0)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 62)
    assert model.get_layer("pad_to_32").output_shape == (None, 32, 32, 1)
    with pytest.raises(ValueError, match="takes no widths"):
        get_model("mobilenetv3small", "femnist", widths=(8,))


def test_the_cli_offers_every_registered_model():
    from tff_prune.config import MODELS
    from tff_prune.models.registry import MODEL_NAMES

    assert MODELS == MODEL_NAMES  # config stays TF-free, so it lists the names again
