"""The tfmot unstructured magnitude-pruning baseline: schedule, server masks, TFF rounds, strip, TFLite sparse."""

import gzip
import json

import numpy as np
import pytest

from mobile import convert
from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.federated import checkpoint, loop, magnitude
from tff_prune.federated.variables import tff_variable_split
from tff_prune.models import get_model


def _kernels(model):
    return {v.name: v.numpy() for v in model.trainable_weights if v.name.endswith("kernel:0")}


def test_server_masks_follow_tfmots_polynomial_schedule_and_keep_the_largest_weights():
    model = get_model("cnn", "femnist", seed=3)
    w = magnitude.wrap(model, 0.8, 4)
    assert magnitude.kernel_sparsity(w) == 0.0
    for r in range(1, 7):
        before = _kernels(w)
        s = magnitude.server_update(w, r)
        expected = 0.8 * (1 - (1 - min(r, 4) / 4) ** 3)  # tfmot PolynomialDecay, power 3
        for name, k in _kernels(w).items():
            zero = k == 0
            assert abs(zero.mean() - expected) <= 1 / k.size + 1e-9, (r, name)
            # every removed weight is no larger than every kept one (per kernel, by magnitude)
            if zero.any() and (~zero).any():
                assert np.abs(before[name][zero]).max() <= np.abs(before[name][~zero]).min()
            np.testing.assert_array_equal(k[~zero], before[name][~zero])
        assert abs(s - expected) < 1e-3
    # clients receive a step that is not a pruning turn of the schedule
    steps = {int(layer.pruning_step.numpy()) for layer in w.layers if magnitude.is_wrapper(layer)}
    assert steps == {6 * magnitude.STEP_STRIDE + 1}


def test_stripped_model_is_the_original_with_the_masked_weights_zeroed(real_images):
    model = get_model("inception", "femnist", seed=5)
    original = {v.name: v.numpy() for v in model.weights}
    w = magnitude.wrap(model, 0.6, 1)
    magnitude.server_update(w, 1)
    stripped = magnitude.strip(w)
    assert not magnitude.is_pruning_model(stripped) and magnitude.is_pruning_model(w)
    assert stripped.count_params() == get_model("inception", "femnist").count_params()
    zeroed = get_model("inception", "femnist", seed=5)
    for v in zeroed.weights:
        masked = original[v.name] * (_kernels(w)[v.name] != 0) if v.name in _kernels(w) else original[v.name]
        v.assign(masked)
    x = real_images[:32]
    np.testing.assert_array_equal(stripped(x).numpy(), zeroed(x).numpy())
    np.testing.assert_array_equal(stripped(x).numpy(), w(x).numpy())


def test_sparsity_for_params_matches_a_parameter_budget():
    model = get_model("cnn", "femnist", seed=0)
    for v in model.trainable_weights:  # biases start at 0; trained ones are not
        if v.name.endswith("bias:0"):
            v.assign(np.full(v.shape, 0.1, np.float32))
    target = 21_488  # the authors' pruned FEMNIST CNN
    s = magnitude.sparsity_for_params(model, target)
    w = magnitude.wrap(model, s, 1)
    magnitude.server_update(w, 1)
    assert abs(magnitude.count_nonzero_params(w) - target) <= 3  # tfmot rounds the zeros per kernel
    with pytest.raises(ValueError, match="must be in"):
        magnitude.sparsity_for_params(model, 60_000)
    with pytest.raises(ValueError, match="cannot be reached by pruning kernels only"):
        magnitude.sparsity_for_params(model, 100)  # fewer than the 158 biases


@pytest.mark.parametrize("fields, flag", [
    (dict(method="magnitude", target_sparsity=1.0), "--target-sparsity"),
    (dict(method="magnitude", prune=False), "--method"),
    (dict(method="magnitude", qat_rounds=1), "--qat-rounds"),
    (dict(method="magnitude", max_prune_round=0), "--max-prune-round"),
    (dict(method="lottery"), "--method"),
])
def test_bad_magnitude_flags_name_the_flag(fields, flag):
    with pytest.raises(ConfigError, match=flag):
        ExperimentConfig(**fields)


@pytest.mark.integration
def test_magnitude_rounds_in_tff_share_the_servers_masks_and_resume(tmp_path, femnist):
    cfg = ExperimentConfig(rounds=3, clients_per_round=3, local_epochs=1, max_clients=20, seed=2,
                           method="magnitude", target_sparsity=0.75, max_prune_round=2,
                           output_dir=str(tmp_path / "m"))
    res = loop.run(ExperimentConfig(**{**cfg.to_dict(), "rounds": 2}), data=femnist, progress=False)
    assert [round(r["kernel_sparsity"], 3) for r in res.records] == [0.656, 0.75]
    assert all(r["prune"]["action"] == "skipped" and "magnitude" in r["prune"]["reason"] for r in res.records)
    # The architecture never changes; TFF broadcasts masks too (non-trainable), clients upload kernels + biases.
    assert res.records[0]["params"] == res.records[1]["params"] == 56_126
    assert res.records[0]["bytes_up"] == 4 * 56_126 * 3
    ck = checkpoint.load(cfg.output_dir)
    wrapped = loop.restore_state(ck).model
    assert magnitude.is_pruning_model(wrapped)
    zeros_after_2 = {n: k == 0 for n, k in _kernels(wrapped).items()}

    more = loop.run(cfg, data=femnist, resume=True, progress=False)
    assert [r["round"] for r in more.records] == [1, 2, 3]
    assert not magnitude.is_pruning_model(more.model) and more.final["params"] == 56_126
    final = _kernels(more.model)
    for name, zero in zeros_after_2.items():
        # past the schedule's end the mask is fixed: round 3's clients trained under it and the server re-masked
        np.testing.assert_array_equal(final[name] == 0, zero)
    assert more.records[-1]["nonzero_params"] == sum(int(np.count_nonzero(v)) for v in more.model.get_weights())
    x, y = femnist.test_arrays()
    assert abs(more.model.evaluate(x, y, verbose=0)[1] - more.records[-1]["eval_accuracy"]) < 1e-6
    assert tff_variable_split(more.model)[1] == []


def test_tflite_sparse_variant_stores_a_magnitude_pruned_model_smaller_and_exact(real_images):
    model = get_model("cnn", "femnist", seed=7)
    w = magnitude.wrap(model, 0.8, 1)
    magnitude.server_update(w, 1)
    stripped = magnitude.strip(w)
    dense, sparse = convert.convert(stripped, "float32"), convert.convert(stripped, "sparse")
    assert len(sparse) < 0.5 * len(dense)
    assert len(gzip.compress(dense)) < 0.5 * len(dense)  # the zeros compress
    check = convert.parity(stripped, sparse, real_images[:64], "sparse")
    assert not check["flagged"] and check["max_abs_diff"] <= 1e-5, check
    assert magnitude.kernel_sparsity(w) > 0.79 and (_kernels(model)["conv2/kernel:0"] == 0).mean() > 0.79  # shared
    # an unpruned model has nothing to sparsify
    dense_model = get_model("cnn", "femnist", seed=7)
    assert abs(len(convert.convert(dense_model, "sparse")) - len(convert.convert(dense_model, "float32"))) < 2_000


@pytest.mark.integration
def test_cli_magnitude_run_writes_sparsity_and_gzip_sizes(tmp_path, data_dir):
    from tff_prune.cli import run as run_simulation

    out = tmp_path / "run"
    code = run_simulation.main(["--rounds", "2", "--method", "magnitude", "--target-sparsity", "0.9",
                                "--max-prune-round", "1", "--clients-per-round", "2", "--local-epochs", "1",
                                "--max-clients", "12", "--latency-runs", "10", "--tflite-variants", "sparse",
                                "--data-dir", data_dir, "--output-dir", str(out), "--quiet"])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["final_params"] == 56_126 and abs(s["final_kernel_sparsity"] - 0.9) < 1e-3
    assert s["final_nonzero_params"] < 0.15 * 56_126
    v = s["tflite_variants"]
    assert set(v) == {"float32", "sparse"} and v["sparse"]["size_bytes"] < 0.5 * v["float32"]["size_bytes"]
    assert v["float32"]["gzip_bytes"] < 0.5 * v["float32"]["size_bytes"]
    assert v["sparse"]["test_accuracy"] == v["float32"]["test_accuracy"]
    with pytest.raises(SystemExit):
        run_simulation.main(["--method", "magnitude", "--no-prune", "--output-dir", str(tmp_path / "x")])


@pytest.mark.parametrize("wrapper", ["magnitude", "qat"])
def test_batchnorm_statistics_under_tfmot_wrappers_are_averaged_too(wrapper):
    from tff_prune.federated.qat import quantize
    from tff_prune.federated.variables import needs_wrapper

    model = get_model("resnet", "celeba", seed=0)
    wrapped = magnitude.wrap(model, 0.5, 2) if wrapper == "magnitude" else quantize(model)
    trainable, non_trainable = tff_variable_split(wrapped)
    moving = [v.name for v in trainable if "moving_" in v.name]
    assert needs_wrapper(wrapped) and len(moving) == 2 * 7  # mean and variance of the 7 BatchNormalization layers
    assert "stem_bn/moving_mean:0" in moving and not [v for v in non_trainable if "moving_" in v.name]
