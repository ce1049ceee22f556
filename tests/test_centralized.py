"""Centralized reference: pooled client data, Keras training, and its command-line tool."""

import json
import os

import numpy as np
import pytest

from tff_prune.centralized import train_centralized
from tff_prune.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    from tff_prune.cli import centralized

    return centralized


def test_train_arrays_are_the_clients_examples_in_order(femnist):
    ids = femnist.client_ids[:3]
    x, y = femnist.train_arrays(ids)
    want_x, want_y = [], []
    for cid in ids:
        for xe, ye in femnist.train.create_tf_dataset_for_client(cid).map(femnist.preprocess_fn):
            want_x.append(xe.numpy())
            want_y.append(int(ye.numpy()))
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, np.stack(want_x))
    assert y.tolist() == want_y
    assert len(femnist.train_arrays()[1]) == sum(femnist.num_examples(c) for c in femnist.client_ids)


def test_training_learns_and_reports_what_the_model_scores(femnist):
    train, test = femnist.train_arrays(femnist.client_ids[:10]), femnist.test_arrays()
    model = get_model("cnn", "femnist", widths=(8, 16), seed=0)
    result = train_centralized(model, train, test, epochs=3, seed=0, progress=False)
    assert [e["epoch"] for e in result.curve] == [1, 2, 3]
    assert result.num_train_examples == len(train[1]) and result.num_test_examples == len(test[1])
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    # The reported number is the trained model's own test accuracy, not a copy of a training metric.
    pred = model.predict(test[0], verbose=0).argmax(axis=1)
    assert result.final_accuracy == pytest.approx(np.mean(pred == test[1]), abs=1e-6)
    assert result.test_majority == np.bincount(test[1]).max() / len(test[1])
    js = result.to_json()
    assert js["best_accuracy"] == max(e["test_accuracy"] for e in result.curve)
    assert js["curve"][js["best_epoch"] - 1]["test_accuracy"] == js["best_accuracy"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs and batch_size must be >= 1"),
    (dict(epochs=1, batch_size=0), "epochs and batch_size must be >= 1"),
])
def test_bad_arguments(kwargs, message, real_images):
    x = real_images[:4]
    with pytest.raises(ValueError, match=message):
        train_centralized(get_model("cnn", "femnist", widths=(2, 2)), (x, np.zeros(4, np.int32)),
                          (x, np.zeros(4, np.int32)), **kwargs)


def test_mismatched_arrays(real_images):
    x = real_images[:4]
    with pytest.raises(ValueError, match="train x 4 / y 3"):
        train_centralized(get_model("cnn", "femnist", widths=(2, 2)), (x, np.zeros(3, np.int32)),
                          (x, np.zeros(4, np.int32)), epochs=1)


def test_cli_writes_summary_and_plot(tmp_path, data_dir):
    out = tmp_path / "central"
    rc = _script().main(["--dataset", "femnist", "--model", "cnn", "--max-clients", "3", "--epochs", "2",
                         "--data-dir", data_dir, "--output-dir", str(out), "--quiet"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["dataset"], s["model"], s["epochs"], s["num_train_clients"]) == ("femnist", "cnn", 2, 3)
    assert len(s["curve"]) == 2 and 0.0 <= s["final_accuracy"] <= 1.0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--lr", "-1"], "--lr: must be > 0"),
    (["--model", "vgg"], "invalid choice: 'vgg'"),
])
def test_cli_rejects_bad_flags(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(args + ["--output-dir", str(tmp_path)])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cli_missing_data_names_the_file(tmp_path, capsys):
    rc = _script().main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "femnist_leaf_300w.npz" in err and str(tmp_path) in err
    assert not (tmp_path / "out").exists()  # nothing written
