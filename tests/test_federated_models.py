"""Real TFF rounds with each paper architecture: coupled groups pruned on the server, BN statistics averaged."""

import numpy as np
import pytest
import tensorflow as tf

from tff_prune import accounting
from tff_prune.config import ExperimentConfig
from tff_prune.federated import loop
from tff_prune.federated.process import build_fed_avg, keras_to_model_weights
from tff_prune.federated.variables import tff_variable_split
from tff_prune.models import get_model

pytestmark = pytest.mark.integration


def make_config(tmp_path, **kw):
    base = dict(rounds=2, clients_per_round=2, local_epochs=1, k=1.0, max_prune_round=1, patience=3,
                max_clients=8, seed=3, output_dir=str(tmp_path / "run"), latency_runs=10, schedule="paper")
    base.update(kw)
    return ExperimentConfig(**base)


def test_resnet_on_celeba_prunes_residual_groups_and_averages_batchnorm(tmp_path, celeba):
    cfg = make_config(tmp_path, dataset="celeba", model="resnet", criterion="ratio", prune_ratio=0.4, round_to=4)
    result = loop.run(cfg, data=celeba, progress=False)
    first, second = result.records
    assert second["prune"]["action"] == "accepted"
    w = second["widths"]
    # Residual partners were pruned as one group, and every group kept a multiple of 4 channels.
    assert w["block1_conv2"] == w["block1_shortcut"] == 12 and w["block2_conv2"] == w["block2_shortcut"] == 12
    assert w["stem_conv"] == 12 and w["block1_conv1"] == 20 and w["block2_conv1"] == 40  # 16/32/64 - 40%, to x4
    model = result.model
    assert model.get_layer("block2_conv1").kernel.shape[2] == w["block1_conv2"]
    assert model.get_layer("classifier").kernel.shape[0] == 6 * 6 * w["block2_conv2"]
    assert second["params"] == accounting.count_params(model) < 30_626
    # BatchNorm moving statistics came back from the clients (stock TFF FedAvg leaves them at 0 / 1).
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            assert np.abs(layer.moving_mean.numpy()).max() > 1e-3
            assert np.abs(layer.moving_variance.numpy() - 1).max() > 1e-3
    # ...and they travel upstream: bytes_up counts them.
    uploaded = sum(int(np.prod(v.shape)) for v in tff_variable_split(model)[0])
    assert second["bytes_up"] == 4 * uploaded * 2 and uploaded == accounting.count_params(model)
    assert 0 <= second["eval_accuracy"] <= 1


def test_inception_on_femnist_prunes_concat_branches(tmp_path, femnist):
    cfg = make_config(tmp_path, dataset="femnist", model="inception", max_clients=20)
    result = loop.run(cfg, data=femnist, progress=False)
    assert result.records[1]["prune"]["action"] == "accepted"
    w = result.records[1]["widths"]
    branches = w["mixed1_1x1"] + w["mixed1_3x3"] + w["mixed1_5x5"]
    assert branches < 48
    model = result.model
    for name in ("mixed2_1x1", "mixed2_3x3", "mixed2_5x5"):
        assert model.get_layer(name).kernel.shape[2] == branches
    assert model.get_layer("conv6").kernel.shape[2] == w["mixed2_1x1"] + w["mixed2_3x3"] + w["mixed2_5x5"]
    assert result.final["flops"] < 31_010_894 and np.isfinite(result.records[-1]["train_loss"])


def test_cnn_on_celeba_with_the_authors_reinit(tmp_path, celeba):
    cfg = make_config(tmp_path, dataset="celeba", model="cnn", weights="reinit")
    result = loop.run(cfg, data=celeba, progress=False)
    assert result.records[0]["params"] == 80_930 and result.records[0]["flops"] == 152_485_804
    assert result.records[1]["prune"]["action"] == "accepted" and result.final["params"] < 80_930


def test_batchnorm_statistics_are_trainable_to_tff_only(celeba):
    model = get_model("resnet", "celeba", seed=0)
    trainable, non_trainable = tff_variable_split(model)
    names = [v.name for v in trainable]
    assert names[:len(model.trainable_weights)] == [v.name for v in model.trainable_weights]
    assert {n.split("/")[-1] for n in names[len(model.trainable_weights):]} == {"moving_mean:0", "moving_variance:0"}
    assert non_trainable == []
    spec = celeba.client_dataset(celeba.client_ids[0], 1, 4, 0).element_spec
    process = build_fed_avg(lambda: get_model("resnet", "celeba"), spec, 1e-3, 1.0)
    state = process.set_model_weights(process.initialize(), keras_to_model_weights(model))
    assert len(process.get_model_weights(state).trainable) == len(trainable)


def one_batch_round(femnist, client_lr, server_lr, **optimizers):
    """One FedAvg round of the smallest client's examples as one batch: (model before, its gradients, weights after)."""
    cid = min(femnist.client_ids, key=femnist.num_examples)
    ds = femnist.client_dataset(cid, 1, femnist.num_examples(cid), seed=0)
    model = get_model("cnn", "femnist", widths=(4, 8), seed=0)
    process = build_fed_avg(lambda: get_model("cnn", "femnist", widths=(4, 8)), ds.element_spec, client_lr,
                            server_lr, **optimizers)
    state = process.set_model_weights(process.initialize(), keras_to_model_weights(model))
    new = process.get_model_weights(process.next(state, [ds]).state)
    x, y = next(iter(ds))
    with tf.GradientTape() as tape:
        loss = tf.keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=True))
    return model, tape.gradient(loss, model.trainable_weights), new


@pytest.mark.parametrize("client_optimizer", ["sgd", "adam"])
def test_one_client_one_batch_round_is_one_optimizer_step(client_optimizer, femnist):
    # One client, one local epoch whose examples fit one batch, server lr 1: the new global model is the
    # client's model after one step from the global weights. SGD: w - lr * g. A fresh Adam's first step is
    # lr * g / (|g| + eps / sqrt(1 - beta2)) (bias-corrected; Kingma & Ba 2015, Alg. 1; TFF's build_adam
    # defaults beta2 = 0.999, eps = 1e-7): nearly lr * sign(g), whatever the gradient's size.
    lr = 0.05 if client_optimizer == "sgd" else 1e-3
    model, grads, new = one_batch_round(femnist, lr, 1.0, client_optimizer=client_optimizer)
    for w, g, got in zip(model.trainable_weights, grads, new.trainable):
        w, g = w.numpy().astype(np.float64), g.numpy().astype(np.float64)
        step = g if client_optimizer == "sgd" else g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
        np.testing.assert_allclose(got, w - lr * step, rtol=1e-4, atol=1e-7)


def test_server_adam_takes_fedadams_first_step(femnist):
    # One client, one batch, client SGD: the averaged delta is -lr_c * g. TFF's server optimizer gets its
    # negation, lr_c * g, as the gradient; FedAdam's first (bias-corrected) step is then
    # lr_s * (lr_c g) / (|lr_c g| + eps / sqrt(1 - beta2)) (Reddi et al. 2021; TFF's build_adam defaults).
    lr_c, lr_s = 0.05, 0.01
    model, grads, new = one_batch_round(femnist, lr_c, lr_s, client_optimizer="sgd", server_optimizer="adam")
    for w, g, got in zip(model.trainable_weights, grads, new.trainable):
        w32 = w.numpy()
        server_grad = -((w32 - np.float32(lr_c) * g.numpy()) - w32).astype(np.float64)  # the float32 client delta
        expected = w32.astype(np.float64) - lr_s * server_grad / (np.abs(server_grad) + 1e-7 / np.sqrt(1 - 0.999))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    spec = femnist.client_dataset(femnist.client_ids[0], 1, 4, 0).element_spec
    with pytest.raises(ValueError, match="unknown server optimizer 'adagrad'; choose one of sgd, adam, yogi"):
        build_fed_avg(lambda: get_model("cnn", "femnist"), spec, 1e-3, 1.0, server_optimizer="adagrad")


def test_unknown_client_optimizer(femnist):
    spec = femnist.client_dataset(femnist.client_ids[0], 1, 4, 0).element_spec
    with pytest.raises(ValueError, match="unknown client optimizer 'rmsprop'; choose one of adam, sgd"):
        build_fed_avg(lambda: get_model("cnn", "femnist"), spec, 1e-3, 1.0, client_optimizer="rmsprop")
