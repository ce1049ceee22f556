"""TFLite's ``benchmark_model`` on an Android device: what to run and how to read its output.

``adb.py`` only moves bytes and runs commands; this module decides the flags, checks
the binary's ELF machine against the device ABI, runs each model in a per-run folder
under ``/data/local/tmp`` (removed afterwards, also after a failure) and parses the
tool's output into the same schema as :func:`mobile.host_benchmark.benchmark`.

Flags are those of ``tensorflow/lite/tools/benchmark`` (README of the tool):
``--graph``, ``--num_threads``, ``--num_runs``, ``--warmup_runs``, ``--use_xnnpack``,
``--use_gpu``, ``--use_nnapi``, ``--enable_op_profiling``,
``--profiling_output_csv_file``, ``--report_peak_memory_footprint``.

The op-profiling CSV (TFLite's ``ProfileSummaryCSVFormatter``: ``=== Run Order ===`` and
``=== Summary by node type ===`` tables with ``node type, [start,] first, avg_ms, %, cdf%, mem KB,
times called, name`` columns) is parsed by :func:`parse_op_profile` into per-op JSON.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import uuid
from typing import Optional, Sequence

from mobile.adb import Adb, AdbError

REMOTE_ROOT = "/data/local/tmp"
# Android ABI (getprop ro.product.cpu.abi) -> ELF e_machine name of binaries that run there.
ABI_MACHINES = {"arm64-v8a": "aarch64", "armeabi-v7a": "arm", "armeabi": "arm", "x86_64": "x86_64", "x86": "x86"}
_ELF_MACHINES = {0x03: "x86", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64"}


class BenchmarkModelError(RuntimeError):
    """benchmark_model cannot run or its output cannot be read; the message says why."""


def elf_machine(path: str) -> str:
    """The CPU architecture an ELF executable is built for: 'aarch64', 'arm', 'x86_64' or 'x86'.

    Raises:
      BenchmarkModelError: the file is missing, not an ELF file, or for another machine.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as e:
        raise BenchmarkModelError(f"cannot read the benchmark_model binary {path}: {e}") from e
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise BenchmarkModelError(f"{path} is not an ELF executable; pass the Android benchmark_model binary "
                                  f"(e.g. android_aarch64_benchmark_model from TFLite's prebuilt tools)")
    byteorder = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], byteorder)
    if machine not in _ELF_MACHINES:
        raise BenchmarkModelError(f"{path} is an ELF file for machine {machine:#x}, which no Android ABI runs")
    return _ELF_MACHINES[machine]


def check_abi(binary: str, abi: str) -> str:
    """Refuses a binary that the device cannot execute; returns the binary's machine.

    Raises:
      BenchmarkModelError: e.g. an aarch64 binary on an x86_64 emulator.
    """
    machine = elf_machine(binary)
    want = ABI_MACHINES.get(abi)
    ok = want == machine or (abi == "arm64-v8a" and machine == "arm") or (abi == "x86_64" and machine == "x86")
    if not ok:
        raise BenchmarkModelError(
            f"the benchmark_model binary {binary} is built for {machine}, but the device ABI is {abi!r} "
            f"(needs {want or 'an unknown machine'}); download the binary for {abi} "
            f"(android_{'aarch64' if want == 'aarch64' else want}_benchmark_model)")
    return machine


@dataclasses.dataclass(frozen=True)
class Options:
    """benchmark_model flags (see the module docstring); ``taskset`` is a CPU mask like ``"f0"``."""

    num_threads: int = 1
    num_runs: int = 50
    warmup_runs: int = 1
    use_xnnpack: bool = True
    use_gpu: bool = False
    use_nnapi: bool = False
    enable_op_profiling: bool = False
    taskset: Optional[str] = None
    report_peak_memory_footprint: bool = False

    def __post_init__(self):
        for name in ("num_threads", "num_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup_runs < 0:
            raise ValueError(f"--warmup-runs must be >= 0, got {self.warmup_runs}")
        if self.taskset is not None and not re.fullmatch(r"[0-9a-fA-F]+", self.taskset):
            raise ValueError(f"--taskset must be a hexadecimal CPU mask such as f0, got {self.taskset!r}")


def build_command(binary: str, graph: str, options: Options, profile_csv: Optional[str] = None) -> list[str]:
    """The remote argv (each element one argument; :class:`Adb` quotes them)."""
    argv = []
    if options.taskset:
        argv += ["taskset", options.taskset]
    argv += [binary, f"--graph={graph}", f"--num_threads={options.num_threads}",
             f"--num_runs={options.num_runs}", f"--warmup_runs={options.warmup_runs}",
             f"--use_xnnpack={str(options.use_xnnpack).lower()}", f"--use_gpu={str(options.use_gpu).lower()}",
             f"--use_nnapi={str(options.use_nnapi).lower()}"]
    if options.report_peak_memory_footprint:
        argv.append("--report_peak_memory_footprint=true")
    if options.enable_op_profiling:
        argv.append("--enable_op_profiling=true")
        if profile_csv:
            argv.append(f"--profiling_output_csv_file={profile_csv}")
    return argv


_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT = re.compile(r"count=(\d+)(.*)")
_FIELD = re.compile(r"(\w+)=" + _NUM)
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                      + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_AVERAGE = re.compile(r"Average inference timings in us: Warmup: " + _NUM + r", Init: " + _NUM
                      + r", (?:Inference|no stats): " + _NUM)
_MEM_OLD = re.compile(r"Peak memory footprint \(MB\): init=" + _NUM + r" overall=" + _NUM)
_MEM_DELTA = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUM
                        + r" overall=" + _NUM)
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)
_STAT_KEYS = {"avg": "inference_avg_us", "std": "inference_std_us", "min": "inference_min_us",
              "max": "inference_max_us", "median": "inference_median_us", "p5": "inference_p5_us",
              "p95": "inference_p95_us"}


def parse_output(text: str) -> dict:
    """Parses ``benchmark_model`` (or the Android benchmark app's logcat) output.

    Accepts optional ``INFO: `` / logcat prefixes, ``count=…`` lines with or without
    ``p5=/median=/p95=``, scientific notation, the old ``Peak memory footprint (MB)``,
    the newer ``Memory footprint delta …`` and ``Overall peak memory footprint …`` lines,
    and ``Average inference timings in us: Warmup: …, Init: …, Inference: …``.

    Returns:
      dict with ``init_us``, ``first_inference_us``, ``warmup_avg_us``, ``inference_avg_us``
      and, where the output reports them, ``inference_std_us``, ``inference_min_us``,
      ``inference_max_us``, ``inference_median_us``, ``inference_p5_us``,
      ``inference_p95_us``, ``memory_init_mb``, ``memory_overall_mb``, ``peak_memory_mb``
      (floats; µs and MB).

    Raises:
      BenchmarkModelError: no inference timings in the output (quotes its last lines).
    """
    out: dict = {}
    count_lines = []
    for line in text.splitlines():
        m = _COUNT.search(line)
        if m and "Timings (microseconds)" not in line and "Memory (bytes)" not in line:  # op-profile tables
            count_lines.append(dict((k, float(v)) for k, v in _FIELD.findall(line)) | {"count": float(m.group(1))})
        if m := _TIMINGS.search(line):
            init, first, warm, inf = map(float, m.groups())
            out.update(init_us=init, first_inference_us=first, warmup_avg_us=warm, inference_avg_us=inf)
        elif m := _AVERAGE.search(line):
            warm, init, inf = map(float, m.groups())
            out.update(init_us=init, warmup_avg_us=warm, inference_avg_us=inf)
        if m := _MEM_OLD.search(line):
            out.update(memory_init_mb=float(m.group(1)), memory_overall_mb=float(m.group(2)))
        if m := _MEM_DELTA.search(line):
            out.update(memory_init_mb=float(m.group(1)), memory_overall_mb=float(m.group(2)))
        if m := _MEM_PEAK.search(line):
            out["peak_memory_mb"] = float(m.group(1))
    if count_lines:
        stats = count_lines[-1]  # the regular run comes after the warm-up run
        for key, name in _STAT_KEYS.items():
            if key in stats:
                out[name] = stats[key]
        out.setdefault("inference_avg_us", stats.get("avg"))
        if len(count_lines) > 1:
            warm = count_lines[0]
            out.setdefault("first_inference_us", warm.get("first", warm.get("curr")))
            out.setdefault("warmup_avg_us", warm.get("avg", warm.get("curr")))
        elif "first" in stats:
            out.setdefault("first_inference_us", stats["first"])
    if out.get("inference_avg_us") is None:
        tail = "\n".join(text.strip().splitlines()[-8:]) or "(no output)"
        raise BenchmarkModelError(f"benchmark_model printed no inference timings; its last lines:\n{tail}")
    negative = {k: v for k, v in out.items() if v is not None and v < 0}
    if negative:
        raise BenchmarkModelError(f"benchmark_model output has negative timings or memory {negative}: not "
                                  f"output of a real run (a time or a footprint is >= 0); check the tool's output")
    return {k: v for k, v in out.items() if v is not None}


_PROFILE_COLUMNS = {"node type": "node_type", "start": "start_ms", "first": "first_ms", "avg_ms": "avg_ms",
                    "%": "percent", "cdf%": "cdf_percent", "mem KB": "mem_kb", "times called": "times_called",
                    "name": "name", "count": "count", "avg %": "percent", "cdf %": "cdf_percent"}


def parse_op_profile(text: str) -> dict:
    """Parses the ``--profiling_output_csv_file`` of ``benchmark_model``.

    Reads the tables after "Operator-wise Profiling Info for Regular Benchmark Runs" (the whole
    file if that line is absent): "Run Order" (one row per op) and "Summary by node type".

    Returns:
      dict: ``ops`` (list, run order; each ``node_type``, ``name``, ``first_ms``, ``avg_ms`` (ms per
      inference), ``percent``, ``cdf_percent``, ``mem_kb``, ``times_called`` and ``start_ms`` where
      the tool prints it) and ``by_type`` (list: ``node_type``, ``count``, ``avg_ms``, ``percent``,
      ``cdf_percent``, ``mem_kb``, ``times_called``), ``total_avg_ms`` (sum of the ops' ``avg_ms``).

    Raises:
      BenchmarkModelError: no Run Order table (quotes the first lines).
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "Regular Benchmark Runs" in line), 0)
    tables: dict[str, list[dict]] = {}
    title, cols = None, None
    for line in lines[start:]:
        stripped = line.strip()
        if stripped.startswith("====") and stripped.endswith("===="):
            title, cols = stripped.strip("= ").strip(), None
            continue
        if not stripped:
            cols = None
            continue
        if stripped.lower().startswith("node type"):
            cols = [c.strip() for c in stripped.split(",")]
            continue
        if cols and title:
            cells = [c.strip() for c in stripped.split(",", len(cols) - 1)]
            if len(cells) != len(cols):
                continue
            row = {}
            for c, v in zip(cols, cells):
                key = _PROFILE_COLUMNS.get(c, c.replace(" ", "_"))
                if key in ("node_type", "name"):
                    row[key] = v
                else:
                    try:
                        row[key] = float(v.rstrip("%"))
                    except ValueError:
                        row[key] = v
            if "times_called" in row and isinstance(row["times_called"], float):
                row["times_called"] = int(row["times_called"])
            if "count" in row and isinstance(row["count"], float):
                row["count"] = int(row["count"])
            tables.setdefault(title, []).append(row)
    ops = tables.get("Run Order")
    if not ops:
        head = "\n".join(lines[:6]) or "(empty file)"
        raise BenchmarkModelError(f"the op-profiling CSV has no 'Run Order' table; its first lines:\n{head}")
    return {"ops": ops, "by_type": tables.get("Summary by node type", []),
            "total_avg_ms": float(sum(o.get("avg_ms", 0.0) for o in ops))}


def _file_stem(label: str) -> str:
    stem = label[:-len(".tflite")] if label.endswith(".tflite") else label
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "model"


def run_on_device(adb: Adb, binary: str, models: Sequence[str], options: Options,
                  profile_dir: Optional[str] = None, timeout_s: float = 600,
                  labels: Optional[Sequence[str]] = None) -> list[dict]:
    """Benchmarks each model on the device with ``benchmark_model``.

    Checks the device ABI against the binary, pushes binary and models into a fresh
    ``/data/local/tmp/tff_prune_<id>/`` folder, ``chmod +x``, runs each model, pulls the
    op-profiling CSV into ``profile_dir`` when profiling is on (named by the model's label, so two
    files both named model.tflite get two profiles), parses it into ``<label>_ops.json`` with a
    chart ``<label>_ops.png``, and removes the folder afterwards (also after a failure).

    Args:
      labels: one distinct name per model (default: :func:`mobile.host_benchmark.unique_labels`).
      timeout_s: seconds one benchmark run may take (> 0).

    Returns:
      one dict per model: :func:`parse_output` keys (with ``peak_memory_mb`` when
      ``report_peak_memory_footprint``) plus ``model``, ``label``, ``model_bytes``,
      ``device_serial``, ``abi``, ``num_threads``, ``num_runs``, ``delegates`` and ``profile_csv``,
      ``profile_json``, ``profile_png``, ``op_profile`` (:func:`parse_op_profile`) when profiling.

    Raises:
      AdbError: device or transfer problems. BenchmarkModelError: wrong ABI, a failing
      run (with the tool's own error text), output without timings, duplicate labels, bad timeout.
    """
    from mobile.host_benchmark import unique_labels

    if not timeout_s > 0:
        raise BenchmarkModelError(f"timeout must be > 0 seconds, got {timeout_s}")
    for m in models:
        if not os.path.isfile(m):
            raise BenchmarkModelError(f"model file not found: {m}")
    labels = list(labels) if labels is not None else unique_labels(models)
    stems = [_file_stem(x) for x in labels]
    if len(labels) != len(models) or len(set(stems)) != len(stems):
        raise BenchmarkModelError(f"need one distinct label per model, got {labels} for {len(models)} models")
    abi = adb.getprop("ro.product.cpu.abi")
    check_abi(binary, abi)
    remote_dir = posixpath.join(REMOTE_ROOT, f"tff_prune_{uuid.uuid4().hex[:12]}")
    results = []
    adb.shell(["mkdir", "-p", remote_dir])
    try:
        remote_bin = posixpath.join(remote_dir, "benchmark_model")
        adb.push(binary, remote_bin)
        adb.shell(["chmod", "755", remote_bin])
        for i, model in enumerate(models):
            remote_model = posixpath.join(remote_dir, f"model_{i}_{os.path.basename(model)}")
            adb.push(model, remote_model)
            remote_csv = posixpath.join(remote_dir, f"profile_{i}.csv") if options.enable_op_profiling else None
            proc = adb.shell(build_command(remote_bin, remote_model, options, remote_csv), timeout_s=timeout_s,
                             check=False)
            text = proc.stdout + proc.stderr
            if proc.returncode != 0:
                tail = "\n".join(text.strip().splitlines()[-8:])
                raise BenchmarkModelError(f"benchmark_model failed on {os.path.basename(model)} "
                                          f"(exit {proc.returncode}):\n{tail}")
            result = parse_output(text)
            local_csv = None
            if remote_csv and profile_dir:
                from mobile.report import op_profile_chart
                from tff_prune.report import write_json

                os.makedirs(profile_dir, exist_ok=True)
                local_csv = os.path.join(profile_dir, stems[i] + "_ops.csv")
                adb.pull(remote_csv, local_csv)
                with open(local_csv) as f:
                    profile = parse_op_profile(f.read())
                result.update(op_profile=profile,
                              profile_json=write_json(os.path.join(profile_dir, stems[i] + "_ops.json"),
                                                      {"label": labels[i], "model": model, **profile}),
                              profile_png=op_profile_chart(profile, os.path.join(profile_dir, stems[i] + "_ops.png"),
                                                           f"{labels[i]}: per-op time (benchmark_model)"))
            delegates = [d for d, on in (("xnnpack", options.use_xnnpack), ("gpu", options.use_gpu),
                                         ("nnapi", options.use_nnapi)) if on]
            result.update(model=model, label=labels[i], model_bytes=os.path.getsize(model), device_serial=adb.serial,
                          abi=abi, num_threads=options.num_threads, num_runs=options.num_runs, delegates=delegates,
                          profile_csv=local_csv)
            results.append(result)
    finally:
        try:
            adb.shell(["rm", "-rf", remote_dir], check=False)
        except AdbError:
            pass
    return results
