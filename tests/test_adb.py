"""The adb driver and the on-device benchmark against a fake `adb` first on PATH, plus real adb."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from mobile.adb import Adb, AdbError
from mobile.benchmark_model import BenchmarkModelError, Options, run_on_device

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_OUTPUT = open(os.path.join(HERE, "data", "benchmark_model", "ti_sdk_info_prefix_percentiles.txt")).read()


def elf_binary(path, machine=0xB7):
    head = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little")
    path.write_bytes(head + bytes(44))
    return str(path)


class FakeDevice:
    """Installs tests/fake_adb.py as `adb` first on PATH and exposes its state and call log."""

    def __init__(self, tmp_path, monkeypatch):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        adb = self.bin / "adb"
        adb.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = 'adb'\n"
                       f"runpy.run_path({os.path.join(HERE, 'fake_adb.py')!r}, run_name='__main__')\n")
        adb.chmod(0o755)
        self.root = tmp_path / "device_fs"
        (self.root / "data" / "local" / "tmp").mkdir(parents=True)
        self.log = tmp_path / "adb_calls.jsonl"
        self.state_path = tmp_path / "device.json"
        self.state = {"devices": [["R58M123ABC", "device", "product:a52q model:SM_A525F device:a52q"]],
                      "abi": "arm64-v8a", "root": str(self.root), "output": BENCH_OUTPUT}
        self.save()
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_ADB_LOG", str(self.log))
        monkeypatch.setenv("FAKE_ADB_STATE", str(self.state_path))

    def save(self):
        self.state_path.write_text(json.dumps(self.state))

    def calls(self):
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []

    def leftover(self):
        return os.listdir(self.root / "data" / "local" / "tmp")


@pytest.fixture
def device(tmp_path, monkeypatch):
    return FakeDevice(tmp_path, monkeypatch)


@pytest.fixture
def models(tmp_path):
    a = tmp_path / "fedavg model.tflite"
    b = tmp_path / "pruned; touch pwned $(id).tflite"
    a.write_bytes(b"TFL3" * 100)
    b.write_bytes(b"TFL3" * 50)
    return [str(a), str(b)]


def test_benchmarks_each_model_and_cleans_up(device, models, tmp_path):
    binary = elf_binary(tmp_path / "android_aarch64_benchmark_model")
    adb = Adb()
    assert adb.serial == "R58M123ABC"
    results = run_on_device(adb, binary, models, Options(num_threads=4, num_runs=50, enable_op_profiling=True,
                                                         taskset="f0"), profile_dir=str(tmp_path / "prof"))
    assert [r["model"] for r in results] == models
    assert results[0]["inference_avg_us"] == 1.24027e6 and results[0]["inference_median_us"] == 1239807
    assert results[1]["abi"] == "arm64-v8a" and results[1]["model_bytes"] == 200
    assert os.path.isfile(results[1]["profile_csv"])
    assert device.leftover() == []  # per-run folder removed
    calls = device.calls()
    assert calls[0] == ["devices", "-l"]
    for c in calls[1:]:
        assert c[:2] == ["-s", "R58M123ABC"] and c[2] in ("shell", "push", "pull")
        if c[2] == "shell":
            assert len(c) == 4  # one command string, quoted by us
    runs = [shlex.split(c[3]) for c in calls[1:] if c[2] == "shell" and "benchmark_model" in c[3]
            and not c[3].startswith("chmod")]
    assert len(runs) == 2
    assert runs[1][:2] == ["taskset", "f0"]
    graph = [a for a in runs[1] if a.startswith("--graph=")][0]
    assert graph.endswith("/model_1_pruned; touch pwned $(id).tflite")  # one intact argument
    assert "--num_threads=4" in runs[1] and "--enable_op_profiling=true" in runs[1]


def test_failure_returns_the_tools_error_and_still_cleans_up(device, models, tmp_path):
    device.state.update(fail=True, fail_output="ERROR: Didn't find op for builtin opcode 'CONV_2D' version '5'\n"
                                               "Benchmarking failed.", fail_code=1)
    device.save()
    binary = elf_binary(tmp_path / "bm")
    with pytest.raises(BenchmarkModelError, match="(?s)exit 1.*Didn't find op for builtin opcode"):
        run_on_device(Adb(), binary, models, Options())
    assert device.leftover() == []


def test_wrong_abi_is_refused_before_pushing(device, models, tmp_path):
    device.state["abi"] = "x86_64"
    device.save()
    with pytest.raises(BenchmarkModelError, match="built for aarch64, but the device ABI is 'x86_64'"):
        run_on_device(Adb(), elf_binary(tmp_path / "bm"), models, Options())
    assert not any(c[2:3] == ["push"] for c in device.calls())


@pytest.mark.parametrize("devices, serial, message", [
    ([], None, "no Android device attached"),
    ([["A1", "device", ""], ["B2", "device", ""]], None, "several devices attached .*--serial"),
    ([["A1", "unauthorized", ""]], None, "unauthorized: unlock it and accept"),
    ([["A1", "offline", ""]], None, "offline"),
    ([["A1", "device", ""]], "Z9", "'Z9' is not attached"),
])
def test_device_selection_errors(device, devices, serial, message):
    device.state["devices"] = devices
    device.save()
    with pytest.raises(AdbError, match=message):
        Adb(serial=serial)


def test_serial_picks_one_of_several(device):
    device.state["devices"] = [["A1", "device", ""], ["B2", "device", ""]]
    device.save()
    assert Adb(serial="B2").getprop("ro.product.cpu.abi") == "arm64-v8a"
    assert device.calls()[-1] == ["-s", "B2", "shell", "getprop ro.product.cpu.abi"]


def test_adb_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AdbError, match="adb not found .*apt-get install adb"):
        Adb()


def test_android_cli_end_to_end(device, models, tmp_path, capsys):
    from mobile.cli import benchmark_android

    out = tmp_path / "out"
    code = benchmark_android.main(["--benchmark-binary", elf_binary(tmp_path / "bm"), "--num-threads", "2",
                                   "--output-dir", str(out)] + models)
    text = capsys.readouterr().out
    assert code == 0
    saved = json.loads((out / "android_benchmark.json").read_text())
    assert len(saved["results"]) == 2 and saved["results"][0]["device_serial"] == "R58M123ABC"
    assert "speed-up vs first" in text and "1.00x" in text
    assert (out / "android_benchmark.png").read_bytes()[:4] == b"\x89PNG"


def test_android_cli_reports_no_device(device, models, tmp_path, capsys):
    from mobile.cli import benchmark_android

    device.state["devices"] = []
    device.save()
    code = benchmark_android.main(["--benchmark-binary", elf_binary(tmp_path / "bm")] + models)
    assert code == 2 and "no Android device attached" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("adb") is None and os.environ.get("CI") != "true",
                    reason="Debian's adb is not installed (.ci/run installs it)")
def test_real_adb_without_a_device_says_so():
    """Real Debian adb, no device attached: the 'no device' path end to end."""
    real = shutil.which("adb")
    assert real, "CI must install Debian's adb (apt-get install adb)"
    try:
        with pytest.raises(AdbError, match="no Android device attached"):
            Adb(adb_path=real)
    finally:
        subprocess.run([real, "kill-server"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)


def test_the_fake_device_catches_an_unquoted_command(device):
    """The stand-in parses like a shell, so an unquoted ';' would have failed the tests above."""
    proc = subprocess.run(["adb", "-s", "R58M123ABC", "shell", "ls /data/local/tmp/x; reboot"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 99 and "INJECTION" in proc.stderr


NO_PERMISSIONS = ("no permissions (user in plugdev group; are your udev rules wrong?); "
                  "see [http://developer.android.com/tools/device.html]")


def test_no_permissions_state_is_read_whole(device):
    device.state["devices"] = [["0123456789ABCDEF", NO_PERMISSIONS, "usb:1-1 transport_id:3"]]
    device.save()
    devs = Adb(select=False).devices()
    assert devs[0].state == "no permissions" and devs[0].description.endswith("usb:1-1 transport_id:3")
    assert "udev rules wrong" in devs[0].description
    with pytest.raises(AdbError, match="no permission to open it .*plugdev group"):
        Adb()


def test_list_devices(device, capsys):
    from mobile.cli import benchmark_android

    device.state["devices"] = [["R58M123ABC", "device", "product:a52q model:SM_A525F"],
                               ["emulator-5554", "unauthorized", ""], ["0123", NO_PERMISSIONS, "usb:1-1"]]
    device.save()
    assert benchmark_android.main(["--list-devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| R58M123ABC | device | product:a52q model:SM_A525F | ready |"
    assert lines[3] == "| emulator-5554 | unauthorized |  | accept the 'Allow USB debugging' prompt |"
    assert lines[4].startswith("| 0123 | no permissions | (user in plugdev group")
    assert device.calls() == [["devices", "-l"]]  # listing touches no device


@pytest.mark.parametrize("flag", ["-1", "0", "nan"])
def test_timeout_must_be_positive(device, models, tmp_path, capsys, flag):
    from mobile.cli import benchmark_android

    with pytest.raises(SystemExit):
        benchmark_android.main(["--benchmark-binary", elf_binary(tmp_path / "bm"), "--timeout", flag] + models)
    assert "--timeout must be > 0 seconds" in capsys.readouterr().err
    assert device.calls() == []
    with pytest.raises(BenchmarkModelError, match="timeout must be > 0"):
        run_on_device(Adb(), elf_binary(tmp_path / "bm"), models, Options(), timeout_s=-1)


def test_pass_through_options_peak_memory_and_op_profiles_keyed_by_run(device, tmp_path):
    from mobile.cli import benchmark_android

    paths = []
    for run in ("fedavg", "pruned"):
        (tmp_path / run).mkdir()
        paths.append(str(tmp_path / run / "model.tflite"))
        (tmp_path / run / "model.tflite").write_bytes(b"TFL3" * (30 if run == "pruned" else 60))
    out = tmp_path / "out"
    code = benchmark_android.main(["--benchmark-binary", elf_binary(tmp_path / "bm"), "--use_gpu", "--use_nnapi",
                                   "--use_xnnpack", "false", "--report_peak_memory_footprint",
                                   "--enable_op_profiling", "--output-dir", str(out)] + paths)
    assert code == 0
    runs = [shlex.split(c[3]) for c in device.calls() if c[2:3] == ["shell"] and "--graph=" in c[3]]
    assert len(runs) == 2
    for argv in runs:
        for flag in ("--use_gpu=true", "--use_nnapi=true", "--use_xnnpack=false",
                     "--report_peak_memory_footprint=true", "--enable_op_profiling=true"):
            assert flag in argv, (flag, argv)
    saved = json.loads((out / "android_benchmark.json").read_text())["results"]
    assert [r["label"] for r in saved] == ["fedavg/model.tflite", "pruned/model.tflite"]
    assert [r["peak_memory_mb"] for r in saved] == [12.5, 12.5] and saved[0]["delegates"] == ["gpu", "nnapi"]
    md = (out / "android_benchmark.md").read_text()
    assert "| fedavg/model.tflite |" in md and "| pruned/model.tflite |" in md
    prof = out / "op_profiles"
    assert sorted(os.listdir(prof)) == ["fedavg_model_ops.csv", "fedavg_model_ops.json", "fedavg_model_ops.png",
                                        "pruned_model_ops.csv", "pruned_model_ops.json", "pruned_model_ops.png"]
    ops = json.loads((prof / "pruned_model_ops.json").read_text())
    assert ops["label"] == "pruned/model.tflite"
    assert [o["node_type"] for o in ops["ops"]] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert ops["ops"][0] == {"node_type": "CONV_2D", "start_ms": 0.0, "first_ms": 0.412, "avg_ms": 0.398,
                             "percent": 61.2, "cdf_percent": 61.2, "mem_kb": 0.0, "times_called": 1,
                             "name": "[sequential/conv1/Relu;sequential/conv1/BiasAdd]:0"}
    assert ops["by_type"][0] == {"node_type": "CONV_2D", "count": 2, "avg_ms": 0.586, "percent": 90.1,
                                 "cdf_percent": 90.1, "mem_kb": 0.0, "times_called": 2}
    assert abs(ops["total_avg_ms"] - 0.65) < 1e-9
    assert (prof / "fedavg_model_ops.png").read_bytes()[:4] == b"\x89PNG"
