"""A stand-in for the `adb` executable that plays one Android device (tests only).

No Android device exists on these machines, so tests put this script first on PATH
as `adb`. It records every invocation (argv) as a JSON line in $FAKE_ADB_LOG and
behaves like adb against a fake device whose state is the JSON file $FAKE_ADB_STATE:

  {"devices": [["SERIAL", "device", "product:x model:y"]], "abi": "arm64-v8a",
   "root": "/tmp/.../device_fs", "output": "<benchmark_model stdout>", "fail": false,
   "fail_output": "...", "fail_code": 1}

`adb shell` receives ONE string (as the project sends it) and parses it the way a POSIX
shell would (shlex with punctuation_chars): any unquoted ;, &&, |, & or > in it is
reported as an injection and fails (exit 99). Only the remote commands the project uses exist.
"""

import json
import os
import shlex
import shutil
import sys


# The layout of TFLite's ProfileSummaryCSVFormatter (tensorflow/core/util/stats_calculator.cc, format_as_csv):
# initialization profile, then the regular runs' Run Order and Summary by node type tables.
PROFILE_CSV = """Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
AllocateTensors, 0, 0.25, 0.25, 100%, 100%, 0, 1, AllocateTensors/0

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
CONV_2D, 0, 0.412, 0.398, 61.2%, 61.2%, 0, 1, [sequential/conv1/Relu;sequential/conv1/BiasAdd]:0
MAX_POOL_2D, 0.4, 0.051, 0.049, 7.5%, 68.7%, 0, 1, [sequential/pool1/MaxPool]:1
CONV_2D, 0.45, 0.19, 0.188, 28.9%, 97.6%, 0, 1, [sequential/conv2/Relu]:2
FULLY_CONNECTED, 0.64, 0.016, 0.015, 2.4%, 100%, 0, 1, [sequential/dense/MatMul]:3

============================== Top by Computation Time ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
CONV_2D, 0, 0.412, 0.398, 61.2%, 61.2%, 0, 1, [sequential/conv1/Relu;sequential/conv1/BiasAdd]:0

Number of nodes executed: 4
============================== Summary by node type ==============================
node type, count, avg_ms, avg %, cdf %, mem KB, times called
CONV_2D, 2, 0.586, 90.1%, 90.1%, 0, 2
MAX_POOL_2D, 1, 0.049, 7.5%, 97.6%, 0, 1
FULLY_CONNECTED, 1, 0.015, 2.4%, 100%, 0, 1

Timings (microseconds): count=50 first=669 curr=650 min=640 max=700 avg=650.5 std=10
Memory (bytes): count=0
4 nodes observed
"""


def main(argv):
    with open(os.environ["FAKE_ADB_LOG"], "a") as f:
        f.write(json.dumps(argv) + "\n")
    with open(os.environ["FAKE_ADB_STATE"]) as f:
        state = json.load(f)
    root = state.get("root", "/nonexistent")

    def dev_path(remote):
        return os.path.join(root, remote.lstrip("/"))

    if argv[:2] == ["devices", "-l"]:
        print("List of devices attached")
        for serial, st, desc in state.get("devices", []):
            print(f"{serial:<22}{st} {desc}".rstrip())
        print()
        return 0
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
        known = {s: st for s, st, _ in state.get("devices", [])}
        if known.get(serial) != "device":
            print(f"adb: device '{serial}' not found", file=sys.stderr)
            return 1
    else:
        ready = [s for s, st, _ in state.get("devices", []) if st == "device"]
        if len(ready) != 1:
            print("adb: more than one device/emulator" if ready else "adb: no devices/emulators found",
                  file=sys.stderr)
            return 1
    cmd, args = argv[0], argv[1:]
    if cmd == "push":
        local, remote = args
        target = dev_path(remote)
        if not os.path.isdir(os.path.dirname(target)):
            print(f"adb: error: failed to copy '{local}' to '{remote}': remote No such file or directory",
                  file=sys.stderr)
            return 1
        shutil.copyfile(local, target)
        print(f"{local}: 1 file pushed, 0 skipped.")
        return 0
    if cmd == "pull":
        remote, local = args
        if not os.path.isfile(dev_path(remote)):
            print(f"adb: error: remote object '{remote}' does not exist", file=sys.stderr)
            return 1
        shutil.copyfile(dev_path(remote), local)
        print(f"{remote}: 1 file pulled, 0 skipped.")
        return 0
    if cmd != "shell":
        print(f"adb: unknown command {cmd}", file=sys.stderr)
        return 1
    line = " ".join(args)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    if any(w in (";", "&&", "||", "|", "&", ">", "<", ">>") for w in words):
        print(f"INJECTION: the remote command line splits into several commands: {line}", file=sys.stderr)
        return 99
    if words[:2] == ["getprop", "ro.product.cpu.abi"]:
        print(state.get("abi", "arm64-v8a"))
        return 0
    if words[:2] == ["mkdir", "-p"]:
        os.makedirs(dev_path(words[2]), exist_ok=True)
        return 0
    if words[:1] == ["chmod"]:
        if not os.path.exists(dev_path(words[2])):
            print(f"chmod: {words[2]}: No such file or directory", file=sys.stderr)
            return 1
        return 0
    if words[:2] == ["rm", "-rf"]:
        shutil.rmtree(dev_path(words[2]), ignore_errors=True)
        return 0
    if words[:1] == ["taskset"]:
        words = words[2:]
    if words and words[0].endswith("/benchmark_model"):
        if not os.path.isfile(dev_path(words[0])):
            print(f"sh: {words[0]}: not found", file=sys.stderr)
            return 127
        flags = dict(w[2:].split("=", 1) for w in words[1:])
        if not os.path.isfile(dev_path(flags["graph"])):
            print(f"ERROR: Could not open '{flags['graph']}'.\nERROR: Failed to mmap model {flags['graph']}")
            return 1
        if state.get("fail"):
            print(state.get("fail_output", "Benchmarking failed."))
            return state.get("fail_code", 1)
        print(state.get("output", ""))
        if flags.get("report_peak_memory_footprint") == "true":
            print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {state.get('peak_mb', 12.5)}")
        if "profiling_output_csv_file" in flags:
            with open(dev_path(flags["profiling_output_csv_file"]), "w") as f:
                f.write(PROFILE_CSV)
        return 0
    print(f"sh: {words[0] if words else ''}: not found", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
