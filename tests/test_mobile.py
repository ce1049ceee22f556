"""TFLite float32 conversion (real converter) and host latency (real tflite_runtime interpreter)."""

import numpy as np
import pytest
from tflite_runtime.interpreter import Interpreter

from mobile import convert, host_benchmark
from tff_prune.models import get_model
from tff_prune.pruning import prune_model


def run_tflite(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    interp = Interpreter(model_content=flatbuffer, num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(out["index"])


@pytest.fixture(scope="module")
def models():
    full = get_model("cnn", "femnist", seed=2)
    return {"full": full, "pruned": prune_model(full, {"conv1": np.arange(0, 32, 3), "conv2": np.arange(40)})}


@pytest.mark.parametrize("which", ["full", "pruned"])
def test_float32_tflite_matches_keras_on_real_images(models, which, real_images, tmp_path):
    model = models[which]
    path = tmp_path / "m.tflite"
    size = convert.convert_to_file(model, str(path), "float32")
    data = path.read_bytes()
    assert size == len(data) and data[4:8] == b"TFL3"
    got = run_tflite(data, real_images[:64])
    want = model(real_images[:64]).numpy()
    assert np.abs(got - want).max() <= 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


def test_pruned_model_is_smaller_and_benchmarks(models, real_images):
    full, pruned = convert.convert(models["full"]), convert.convert(models["pruned"])
    assert len(pruned) < len(full)
    res = host_benchmark.benchmark(pruned, num_threads=1, num_runs=30, warmup_runs=3, inputs=real_images)
    for key in ("init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us", "inference_std_us",
                "inference_min_us", "inference_max_us", "inference_median_us", "inference_p5_us",
                "inference_p95_us"):
        assert res[key] > 0, key
    assert res["inference_min_us"] <= res["inference_p5_us"] <= res["inference_median_us"] \
        <= res["inference_p95_us"] <= res["inference_max_us"]
    assert res["num_runs"] == 30 and res["num_threads"] == 1


def test_corrupt_model_is_reported(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(host_benchmark.BenchmarkError, match="broken.tflite"):
        host_benchmark.benchmark(str(bad), num_runs=1)


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown TFLite variant"):
        convert.convert(get_model("cnn", "femnist"), "int3")


def test_host_benchmark_cli(models, tmp_path, capsys, data_dir):
    import json

    from mobile.cli import benchmark_host

    paths = []
    for name, model in models.items():
        p = tmp_path / f"{name}.tflite"
        convert.convert_to_file(model, str(p))
        paths.append(str(p))
    code = benchmark_host.main(paths + ["--num-runs", "20", "--warmup-runs", "2", "--data-dir", data_dir,
                                        "--output-dir", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 0
    saved = json.loads((tmp_path / "out" / "host_benchmark.json").read_text())
    assert [r["model"] for r in saved["results"]] == paths
    assert saved["results"][1]["model_bytes"] < saved["results"][0]["model_bytes"]
    assert "| full.tflite |" in text and "1.00x" in text
    assert (tmp_path / "out" / "host_benchmark.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        benchmark_host.main([str(tmp_path / "missing.tflite")])
    assert "file not found" in capsys.readouterr().err
