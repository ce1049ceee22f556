"""benchmark_model output parser on real published outputs, ELF/ABI check, command building."""

import os

import pytest

from mobile.benchmark_model import BenchmarkModelError, Options, build_command, check_abi, elf_machine, \
    parse_output

DATA = os.path.join(os.path.dirname(__file__), "data", "benchmark_model")


def fixture(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def test_tflite_readme_output_with_scientific_notation():
    r = parse_output(fixture("tflite_readme_op_profiling.txt"))
    assert r["init_us"] == 17187 and r["first_inference_us"] == 3512391
    assert r["warmup_avg_us"] == 3.51239e6 and r["inference_avg_us"] == 2.95034e6
    assert r["inference_std_us"] == 109798 and r["inference_min_us"] == 2727568 and r["inference_max_us"] == 3189954
    assert r["memory_init_mb"] == 4.21094 and r["memory_overall_mb"] == 46.0859
    assert "inference_median_us" not in r and "peak_memory_mb" not in r
    # The op-profiling table's own "Timings (microseconds): count=1" line is not the benchmark run.
    assert r["inference_avg_us"] != 1356


def test_info_prefix_and_percentiles():
    r = parse_output(fixture("ti_sdk_info_prefix_percentiles.txt"))
    assert r["inference_avg_us"] == 1.24027e6 and r["inference_median_us"] == 1239807
    assert r["inference_p5_us"] == 1238753 and r["inference_p95_us"] == 1247415
    assert r["init_us"] == 5579 and r["warmup_avg_us"] == 1.3576e6
    assert r["memory_overall_mb"] == 109.832


def test_old_peak_memory_line():
    r = parse_output(fixture("yolov5_old_peak_memory.txt"))
    assert r["inference_avg_us"] == 249684 and r["init_us"] == 16242 and r["first_inference_us"] == 360262
    assert r["memory_init_mb"] == 4.92969 and r["memory_overall_mb"] == 138.809


def test_periodic_peak_memory_line():
    r = parse_output(fixture("tflite_peak_monitoring.txt"))
    assert r["peak_memory_mb"] == 93.2383 and r["inference_avg_us"] == 56265.8 and r["inference_std_us"] == 982
    assert r["warmup_avg_us"] == 58984.7


def test_android_benchmark_app_logcat_line():
    r = parse_output(fixture("tflite_android_app_logcat.txt"))
    assert r == {"warmup_avg_us": 91471.0, "init_us": 4108.0, "inference_avg_us": 80660.1}


def test_old_no_stats_output():
    r = parse_output(fixture("old_no_stats.txt"))
    assert r["inference_avg_us"] == 137722 and r["init_us"] == 4452 and r["warmup_avg_us"] == 146161
    assert r["first_inference_us"] == 146161 and r["inference_std_us"] == 896


def test_output_without_timings_quotes_its_last_lines():
    text = "STARTING!\nLoaded model /data/local/tmp/x.tflite\nERROR: Node number 3 (CONV_2D) failed to prepare.\n" \
           "Benchmarking failed."
    with pytest.raises(BenchmarkModelError, match="(?s)no inference timings.*Benchmarking failed"):
        parse_output(text)


def elf(tmp_path, machine: int, name="benchmark_model"):
    head = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little")
    path = tmp_path / name
    path.write_bytes(head + bytes(44))
    return str(path)


def test_elf_machine_and_abi_check(tmp_path):
    arm64, x64 = elf(tmp_path, 0xB7, "a"), elf(tmp_path, 0x3E, "b")
    assert elf_machine(arm64) == "aarch64" and elf_machine(x64) == "x86_64"
    assert check_abi(arm64, "arm64-v8a") == "aarch64"
    with pytest.raises(BenchmarkModelError, match="built for aarch64, but the device ABI is 'x86_64'"):
        check_abi(arm64, "x86_64")
    not_elf = tmp_path / "script.sh"
    not_elf.write_text("#!/bin/sh\n")
    with pytest.raises(BenchmarkModelError, match="not an ELF executable"):
        elf_machine(str(not_elf))


def test_command_has_every_flag():
    opts = Options(num_threads=4, num_runs=100, warmup_runs=5, use_xnnpack=False, use_gpu=True,
                   enable_op_profiling=True, taskset="f0")
    argv = build_command("/d/benchmark_model", "/d/m.tflite", opts, "/d/p.csv")
    assert argv == ["taskset", "f0", "/d/benchmark_model", "--graph=/d/m.tflite", "--num_threads=4",
                    "--num_runs=100", "--warmup_runs=5", "--use_xnnpack=false", "--use_gpu=true",
                    "--use_nnapi=false", "--enable_op_profiling=true", "--profiling_output_csv_file=/d/p.csv"]


@pytest.mark.parametrize("kw, message", [({"num_threads": 0}, "--num-threads"), ({"num_runs": 0}, "--num-runs"),
                                         ({"taskset": "f0; reboot"}, "--taskset")])
def test_bad_options(kw, message):
    with pytest.raises(ValueError, match=message):
        Options(**kw)


def test_negative_timings_are_not_accepted():
    with pytest.raises(BenchmarkModelError, match="negative timings"):
        parse_output("count=50 first=10 curr=9 min=-8 max=12 avg=-5 std=1\n")
    with pytest.raises(BenchmarkModelError, match="negative"):
        parse_output("Inference timings in us: Init: 10, First inference: 5, Warmup (avg): 5, Inference (avg): -5\n")


def test_op_profile_csv_without_run_order_is_an_error():
    from mobile.benchmark_model import parse_op_profile

    with pytest.raises(BenchmarkModelError, match="no 'Run Order' table"):
        parse_op_profile("garbage\n")
