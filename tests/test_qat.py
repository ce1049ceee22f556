"""Quantization-aware training in TFF: ranges federated, float weights recoverable, int8 export."""

import json
import os

import numpy as np
import pytest

from tff_prune.config import ConfigError, ExperimentConfig
from tff_prune.federated import checkpoint, loop
from tff_prune.federated.qat import is_qat_model, quantize, strip_quantization
from tff_prune.federated.variables import tff_variable_split
from tff_prune.models import get_model


def test_ranges_join_the_trainable_weights_tff_sends():
    model = get_model("cnn", "femnist", seed=1)
    q = quantize(model)
    trainable, non_trainable = tff_variable_split(q)
    names = [v.name for v in trainable]
    assert names[:len(q.trainable_weights)] == [v.name for v in q.trainable_weights]
    extra = names[len(q.trainable_weights):]
    assert extra and all(n.split(":")[0].endswith(("_min", "_max")) for n in extra)
    assert "quant_relu1/output_max:0" in extra
    assert all("optimizer_step" in v.name for v in non_trainable)
    assert tff_variable_split(model) == (list(model.trainable_weights), list(model.non_trainable_weights))


def test_strip_quantization_recovers_the_float_weights():
    model = get_model("cnn", "femnist", seed=2)
    q = quantize(model)
    fresh = get_model("cnn", "femnist", seed=9)
    strip_quantization(q, fresh)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_qat_rounds_must_fit_the_run():
    with pytest.raises(ConfigError, match="--qat-rounds"):
        ExperimentConfig(rounds=3, qat_rounds=4)


@pytest.mark.integration
def test_last_rounds_train_the_qat_model_and_federate_its_ranges(tmp_path, femnist):
    cfg = ExperimentConfig(rounds=3, qat_rounds=2, clients_per_round=3, local_epochs=1, k=1.0, max_clients=20,
                           seed=4, output_dir=str(tmp_path / "q"), schedule="paper")
    res = loop.run(cfg, data=femnist, progress=False)
    assert [r["qat"] for r in res.records] == [False, True, True]
    assert res.records[1]["prune"]["action"] == "skipped" and "quantization-aware" in res.records[1]["prune"]["reason"]
    assert is_qat_model(res.model) and res.final["params"] == 56_126
    ranges = {v.name: float(np.ravel(v.numpy())[0]) for v in tff_variable_split(res.model)[0] if "output_m" in v.name}
    # Clients' moving-average updates reached the server: the ranges left their initial +-6.
    assert ranges["quant_relu1/output_max:0"] != 6.0 and ranges["quant_relu1/output_min:0"] != -6.0
    # Uploads include the ranges (12 scalars for this CNN) once QAT starts.
    trainable = tff_variable_split(res.model)[0]
    n_ranges = sum(int(np.prod(v.shape)) for v in trainable[len(res.model.trainable_weights):])
    assert n_ranges == 12
    assert res.records[1]["bytes_up"] == res.records[0]["bytes_up"] + 4 * n_ranges * 3
    ck = checkpoint.load(cfg.output_dir)
    restored = loop.restore_state(ck)
    assert is_qat_model(restored.model) and restored.architecture.count_params() == 56_126
    # Resume inside the QAT phase continues the QAT model.
    more = loop.run(ExperimentConfig(**{**cfg.to_dict(), "rounds": 4, "qat_rounds": 2}), data=femnist,
                    resume=True, progress=False)
    assert [r["qat"] for r in more.records] == [False, True, True, True] and is_qat_model(more.model)


@pytest.mark.integration
def test_cli_exports_qat_int8_next_to_post_training_int8(tmp_path, data_dir):
    from tff_prune.cli import run as run_simulation

    out = tmp_path / "run"
    code = run_simulation.main(["--rounds", "2", "--qat-rounds", "1", "--clients-per-round", "3", "--local-epochs",
                                "1", "--max-clients", "12", "--latency-runs", "10", "--tflite-variants", "int8",
                                "--data-dir", data_dir, "--output-dir", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    variants = summary["tflite_variants"]
    assert set(variants) == {"float32", "int8", "qat_int8"}
    # Two rounds leave the outputs nearly uniform, so top-1 agreement is a coin toss; the
    # probabilities themselves must still agree within the int8 tolerance.
    assert variants["qat_int8"]["max_abs_diff"] <= 0.2 and variants["int8"]["max_abs_diff"] <= 0.2
    assert os.path.isfile(out / "model_qat_int8.tflite")
    import tensorflow as tf

    from tff_prune.federated.qat import quantize_scope

    with quantize_scope():
        reloaded = tf.keras.models.load_model(out / "model_qat.h5")
    assert is_qat_model(reloaded)
    qat = summary["qat"]
    assert qat["rounds"] == 1
    assert qat["tflite_qat_int8_accuracy"] == variants["qat_int8"]["test_accuracy"]
    assert qat["tflite_ptq_int8_accuracy"] == variants["int8"]["test_accuracy"]
    side = json.loads((out / "model_qat_int8.json").read_text())
    assert side["inputs"][0]["dtype"] == "uint8"  # the image clients' integer I/O (mobile.convert)
