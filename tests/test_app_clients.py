"""App-ready TFLite: metadata in every variant, uint8 I/O, and a real client (MediaPipe Tasks' ImageClassifier).

A CelebA CNN is trained a few Keras steps on real photos (so its decisions have margins), converted by
tff-prune-convert, and every variant is loaded by MediaPipe's ImageClassifier in its own process
(as an app would: from the file and its metadata alone) and classifies real CelebA test photos.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mobile import convert, metadata
from tff_prune.data import sample_images
from tff_prune.models import get_model

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "mediapipe_client.py")
VARIANTS = ["float32", "float16", "dynamic", "int8"]


def run_client(tmp_path, jobs):
    """Runs tests/mediapipe_client.py once for ``jobs`` [(model path, uint8 images)] (output in files, never a
    pipe); returns its JSON keyed by model path."""
    args = []
    for i, (path, images) in enumerate(jobs):
        np.save(tmp_path / f"images_{i}.npy", images)
        args.append(f"{path}={tmp_path / f'images_{i}.npy'}")
    out, log = tmp_path / "client.json", tmp_path / "client.log"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, CLIENT, str(out)] + args,
                              stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"})
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def celeba_model(data_dir):
    """The CelebA CNN after 3 epochs on 640 real training photos (seeded): enough for decisions with margins."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    x, y = sample_images("celeba", data_dir, "train", 640, seed=0)
    model = get_model("cnn", "celeba", seed=0)
    model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(celeba_model, data_dir, tmp_path_factory):
    from mobile.cli import convert as convert_model

    tmp = tmp_path_factory.mktemp("celeba_export")
    path = tmp / "celeba.keras"
    celeba_model.save(path)
    out = tmp / "assets"
    code = convert_model.main([str(path), "--variants", ",".join(VARIANTS), "--output-dir", str(out),
                               "--data-dir", data_dir, "--model-version", "7", "--parity-samples", "100"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def photos(data_dir):
    """60 real CelebA test-celebrity photos: uint8 pixels (for the client) and float32 / 255 (for Keras)."""
    x, _ = sample_images("celeba", data_dir, "test", 60, seed=3)
    return np.round(x * 255).astype(np.uint8), x


@pytest.fixture(scope="module")
def femnist_export(data_dir, tmp_path_factory):
    """An (untrained) FEMNIST CNN exported as float32: 1-channel input, GRAYSCALE metadata."""
    from mobile.export import export_variants

    model = get_model("cnn", "femnist", seed=1)
    rows = export_variants(model, ["float32"], "femnist", data_dir, str(tmp_path_factory.mktemp("femnist")),
                           lambda v: f"f_{v}.tflite", parity_samples=50)
    return model, rows[0]["path"]


@pytest.fixture(scope="module")
def int8_io_export(celeba_model, data_dir, tmp_path_factory):
    """The CelebA model's int8 variant with --io int8 (int8 input/output tensors)."""
    from mobile.export import export_variants

    out = tmp_path_factory.mktemp("int8io")
    export_variants(celeba_model, ["int8"], "celeba", data_dir, str(out), lambda v: f"m_{v}.tflite",
                    representative_samples=100, parity_samples=20, io_dtype="int8")
    return out


@pytest.fixture(scope="module")
def client(exported, photos, femnist_export, int8_io_export, real_images, tmp_path_factory):
    """MediaPipe's ImageClassifier, one process, on every model of this module."""
    jobs = [(exported / f"celeba_{v}.tflite", photos[0]) for v in VARIANTS]
    jobs.append((int8_io_export / "m_int8.tflite", photos[0][:2]))
    jobs.append((femnist_export[1], np.round(real_images[:2] * 255).astype(np.uint8)))
    return run_client(tmp_path_factory.mktemp("client"), jobs)


def test_every_variant_carries_metadata(exported):
    for variant in VARIANTS:
        data = (exported / f"celeba_{variant}.tflite").read_bytes()
        side = json.loads((exported / f"celeba_{variant}.json").read_text())
        md = metadata.read_metadata(data)
        general = md["metadata"]
        assert general["name"] == f"tff_prune celeba classifier ({variant})"
        assert general["version"] == "7" and general["author"] == "tff_prune"
        assert "non-commercial research purposes only" in general["license"]
        assert "CelebA attribute 'male'" in general["description"]
        assert md["associated_files"] == ["labels.txt"] and md["labels"] == ["not_male", "male"]
        sub = general["subgraph_metadata"][0]
        image = sub["input_tensor_metadata"][0]
        assert image["content"]["content_properties"]["color_space"] == "RGB"
        norm = image["process_units"][0]["options"]
        assert norm["mean"] == [0.0] and norm["std"] == [255.0]
        out = sub["output_tensor_metadata"][0]
        assert out["associated_files"][0]["name"] == "labels.txt"
        assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
        assert md["io"] == {"inputs": side["inputs"], "outputs": side["outputs"]}  # one source of facts
        assert side["size_bytes"] == len(data) and side["model_info"]["version"] == "7"
        if variant == "int8":
            assert image["stats"] == {"max": [255.0], "min": [0.0]}
            assert side["inputs"][0]["dtype"] == "uint8" and side["outputs"][0]["dtype"] == "uint8"
            q = side["inputs"][0]["quantization"]
            assert q["zero_point"] == 0 and abs(q["scale"] - 1 / 255) < 1e-9  # the pixel byte itself
            assert "real = 0.003921568" in image["description"]
        else:
            assert image["stats"] == {"max": [1.0], "min": [0.0]}
            assert side["inputs"][0]["dtype"] == "float32"


def test_mediapipe_classifies_real_photos_like_keras(exported, celeba_model, photos, client):
    u8, x = photos
    paths = {v: exported / f"celeba_{v}.tflite" for v in VARIANTS}
    got = client
    probs = celeba_model(x, training=False).numpy()
    want = probs.argmax(1)
    assert 0 < want.sum() < len(want)  # the trained model says both classes on these photos
    for variant, path in paths.items():
        res = got[str(path)]
        assert "error" not in res, res
        agree = float(np.mean(np.array(res["index"]) == want))
        assert res["label"] == [["not_male", "male"][i] for i in res["index"]]  # names from the metadata
        if variant == "int8":
            assert agree >= 0.9, (variant, agree)
        else:
            assert agree == 1.0, (variant, agree, probs[np.array(res["index"]) != want])
    float_scores = np.array(got[str(paths["float32"])]["score"])
    assert np.abs(float_scores - probs.max(1)).max() < 1e-4  # the client normalized as the metadata says


def test_litert_loads_every_variant_and_agrees_with_tflite_runtime(exported, photos):
    """LiteRT (ai-edge-litert 2.3.0, tflite-runtime's successor) runs the TF 2.14 exports, metadata and all."""
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from tflite_runtime.interpreter import Interpreter as Runtime

    u8, x = photos
    for variant in VARIANTS:
        path = str(exported / f"celeba_{variant}.tflite")
        outs = []
        for cls in (LiteRT, Runtime):
            interp = cls(model_path=path, num_threads=1)
            interp.allocate_tensors()
            inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
            got = []
            for i in range(len(x)):
                interp.set_tensor(inp["index"], u8[i:i + 1] if inp["dtype"] == np.uint8 else x[i:i + 1])
                interp.invoke()
                got.append(interp.get_tensor(out["index"]).astype(np.float64))
            outs.append(np.concatenate(got))
        diff = np.abs(outs[0] - outs[1]).max()
        if variant == "int8":
            # the two runtimes' int8 kernels round differently: a few quantization steps (1/256) apart (seen: 2)
            assert diff <= 4.0, diff
            assert np.mean(outs[0].argmax(1) == outs[1].argmax(1)) >= 0.95
        elif variant == "dynamic":
            assert diff <= 1e-2, diff  # hybrid kernels quantize activations on the fly (seen: 5.2e-4)
        else:
            assert diff <= 1e-6, (variant, diff)
            assert (outs[0].argmax(1) == outs[1].argmax(1)).all()


def test_int8_io_option_is_refused_by_the_image_client(int8_io_export, client):
    """--io int8 stays available (e.g. for the plain interpreter), but image clients refuse INT8 input."""
    out = int8_io_export
    side = json.loads((out / "m_int8.json").read_text())
    assert side["inputs"][0]["dtype"] == "int8" and side["inputs"][0]["quantization"]["zero_point"] == -128
    md = metadata.read_metadata((out / "m_int8.tflite").read_bytes())
    assert md["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]["stats"] == \
        {"max": [127.0], "min": [-128.0]}
    assert "error" in client[str(out / "m_int8.tflite")], client[str(out / "m_int8.tflite")]


def test_femnist_grayscale_metadata_and_what_accepts_it(femnist_export, real_images, client):
    """1-channel models: MediaPipe's ImageClassifier refuses them; the plain interpreter + packed labels work."""
    from tflite_runtime.interpreter import Interpreter

    model, path = femnist_export
    data = open(path, "rb").read()
    md = metadata.read_metadata(data)
    image = md["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "GRAYSCALE"
    assert len(md["labels"]) == 62 and md["labels"][10] == "A"
    assert "Only RGB color space is supported" in client[path]["error"]
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], real_images[:1])
    interp.invoke()
    want = model(real_images[:1]).numpy().argmax(1)[0]
    assert md["labels"][int(interp.get_tensor(out["index"]).argmax())] == md["labels"][want]


def test_dynamic_input_shape_is_refused_before_writing(tmp_path, data_dir, capsys):
    import tensorflow as tf

    from mobile.cli import convert as convert_model

    inp = tf.keras.Input((None, None, 3))
    out = tf.keras.layers.Dense(2, activation="softmax")(tf.keras.layers.GlobalAveragePooling2D()(
        tf.keras.layers.Conv2D(4, 3)(inp)))
    path = tmp_path / "dyn.keras"
    tf.keras.Model(inp, out).save(path)
    code = convert_model.main([str(path), "--output-dir", str(tmp_path / "o"), "--data-dir", data_dir])
    assert code == 2 and "input shape (None, None, None, 3) is dynamic" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_representative_samples_beyond_the_data_names_the_flag(tmp_path, data_dir, capsys):
    from mobile.cli import convert as convert_model

    path = tmp_path / "c.keras"
    get_model("cnn", "femnist", seed=0).save(path)
    code = convert_model.main([str(path), "--output-dir", str(tmp_path / "o"), "--data-dir", data_dir,
                               "--representative-samples", "1000000"])
    err = capsys.readouterr().err
    assert code == 2 and "--representative-samples 1000000" in err and "[1, 41495]" in err
    assert not (tmp_path / "o").exists()


def test_wrong_dataset_is_refused(tmp_path, data_dir, capsys):
    from mobile.cli import convert as convert_model

    path = tmp_path / "c.keras"
    get_model("cnn", "celeba", seed=0).save(path)
    code = convert_model.main([str(path), "--output-dir", str(tmp_path / "o"), "--data-dir", data_dir,
                               "--dataset", "femnist"])
    assert code == 2 and "--dataset femnist means 1 channel(s) and 62 classes" in capsys.readouterr().err


def test_nan_outputs_are_flagged_and_sidecar_is_strict_json(tmp_path, data_dir):
    from mobile.export import export_variants

    model = get_model("cnn", "femnist", seed=0)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    rows = export_variants(model, ["float32"], "femnist", data_dir, str(tmp_path), lambda v: "n.tflite",
                           parity_samples=20)
    assert rows[0]["flagged"] is True and rows[0]["max_abs_diff"] is None

    def no_constants(token):
        raise AssertionError(f"non-JSON token {token} in the sidecar")

    side = json.loads((tmp_path / "n.json").read_text(), parse_constant=no_constants)
    assert side["parity"]["max_abs_diff"] is None and side["non_finite_values"] == ["parity.max_abs_diff"]


def test_uint8_qat_conversion():
    """The QAT path gives uint8 I/O by default too (tfmot model built directly; no TFF rounds)."""
    import tensorflow_model_optimization as tfmot
    from tflite_runtime.interpreter import Interpreter

    qat = tfmot.quantization.keras.quantize_model(get_model("cnn", "femnist", seed=0))
    inp = Interpreter(model_content=convert.convert_qat(qat)).get_input_details()[0]
    assert np.dtype(inp["dtype"]) == np.uint8
