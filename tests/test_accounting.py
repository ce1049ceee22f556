"""Parameters, FLOPs (TF-profiler convention) and bytes per round."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import cnn_param_count, profiler_flops
from tff_prune import accounting
from tff_prune.models import get_model
from tff_prune.pruning import prune_model


def test_full_femnist_cnn_matches_the_paper():
    model = get_model("cnn", "femnist")
    assert accounting.count_params(model) == 56_126
    assert accounting.count_flops(model) == 7_529_588
    assert accounting.conv_widths(model) == {"conv1": 32, "conv2": 64}


@pytest.mark.parametrize("widths", [(32, 64), (17, 43), (5, 1), (1, 9)])
def test_flops_agree_with_the_tf_profiler(widths):
    model = prune_model(get_model("cnn", "femnist", seed=0),
                        {"conv1": np.arange(widths[0]), "conv2": np.arange(widths[1])})
    assert accounting.count_params(model) == cnn_param_count(*widths)
    assert accounting.count_flops(model) == profiler_flops(model)


def test_authors_pruned_widths_give_their_flops():
    # Paper notebook: 7,529,588 -> 2,860,280 FLOPs for widths (17, 43).
    model = get_model("cnn", "femnist", widths=(17, 43))
    assert accounting.count_flops(model) == 2_860_280


def test_round_bytes_are_float32_weights_times_clients():
    model = get_model("cnn", "femnist")
    b = accounting.round_bytes(model, clients=10)
    assert b == {"bytes_down": 4 * 56_126 * 10, "bytes_up": 4 * 56_126 * 10}
    bn = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.BatchNormalization()])
    assert accounting.round_bytes(bn, 2) == {"bytes_down": 4 * 16 * 2, "bytes_up": 4 * 8 * 2}


def test_unaccounted_layer_is_an_error():
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Lambda(lambda t: t * 2.0, name="double")])
    with pytest.raises(ValueError, match="'double' \\(Lambda\\)"):
        accounting.count_flops(model)


def test_preprocessing_tf_ops_and_pointwise_dense_agree_with_the_tf_profiler():
    L = tf.keras.layers
    inputs = tf.keras.Input((6, 5, 3))
    x = L.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = L.Normalization(axis=-1, mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x)
    x = L.Conv2D(8, 1, name="conv")(x)
    hs = tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
    x = L.Multiply(name="hard_swish")([x, hs])
    x = L.Activation("hard_sigmoid", name="hsig")(x) + x
    x = L.Dense(7, name="pointwise")(x)              # Dense on a 4-D input: every pixel
    x = L.LayerNormalization(name="ln")(x)                         # fused (epsilon 1e-3)
    x = L.LayerNormalization(epsilon=1e-6, name="ln_unfused")(x)   # ConvNeXt's
    model = tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(x)))
    flops = accounting.layer_flops(model)
    e = 6 * 5
    assert flops["rescale"] == 2 * e * 3 and flops["norm"] == 2 * e * 3 + 3
    assert flops["pointwise"] == 2 * e * 8 * 7 + e * 7
    assert flops["ln"] == 2 * e * 7 and flops["ln_unfused"] == 9 * e * 7 + 3 * e
    by_symbol = {getattr(layer, "symbol", None): layer.name for layer in model.layers}  # auto names get suffixes
    assert flops[by_symbol["math.add"]] == e * 8 and flops[by_symbol["nn.relu6"]] == 0 and flops["hsig"] == 4 * e * 8
    assert accounting.count_flops(model) == profiler_flops(model)
