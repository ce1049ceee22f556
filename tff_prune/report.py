"""Run outputs: ``metrics.jsonl``, ``summary.json``, ``curves.png`` and ``comparison.md``.

Reports only read results; every number comes from the loop's records and
``accounting``. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from typing import Iterable, Mapping, Sequence

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
COMPARISON_FILE = "comparison.md"


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Writes ``data`` to ``path`` via a temporary file in the same folder + ``os.replace``.

    The file gets the usual permissions (0666 minus the umask), not mkstemp's 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def strict_json(obj):
    """``obj`` with every NaN or infinite float replaced by None, so that it dumps to strict JSON.

    Python's ``json`` writes such floats as the tokens ``NaN`` / ``Infinity``, which are not JSON
    (``jq``, JavaScript and most readers refuse them); the files here hold ``null`` instead.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def _dumps(obj, **kw) -> str:
    return json.dumps(strict_json(obj), allow_nan=False, **kw)


def write_json(path: str, obj) -> str:
    """Writes ``obj`` as indented strict JSON (non-finite floats as null, :func:`strict_json`), atomically."""
    return atomic_write_bytes(path, (_dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str):
    """Reads a JSON file."""
    with open(path) as f:
        return json.load(f)


def write_metrics(path: str, records: Iterable[Mapping]) -> str:
    """Replaces ``metrics.jsonl`` with ``records`` (one strict JSON object per line), atomically."""
    return atomic_write_bytes(path, "".join(_dumps(r) + "\n" for r in records).encode())


def append_metrics(path: str, record: Mapping) -> None:
    """Appends one round's record to ``metrics.jsonl`` (strict JSON: non-finite floats as null) and fsyncs it."""
    with open(path, "a") as f:
        f.write(_dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: str) -> list[dict]:
    """Reads ``metrics.jsonl``; a torn last line (crash mid-write) is dropped. Missing file: []."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def last_accuracy(records: Sequence[Mapping]) -> float | None:
    """Evaluation accuracy of the last evaluated round (None if never evaluated)."""
    for r in reversed(records):
        if r.get("eval_accuracy") is not None:
            return r["eval_accuracy"]
    return None


def plot_curves(records: Sequence[Mapping], path: str, title: str = "") -> str:
    """Saves a PNG with accuracy, parameters and cumulative bytes (MB) against round.

    Accepted prunes are marked with dashed vertical lines between the round whose
    aggregate was pruned and the round that trained the smaller model.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [r["round"] for r in records]
    ev = [(r["round"], r["eval_accuracy"]) for r in records if r.get("eval_accuracy") is not None]
    prunes = [r["round"] for r in records if r.get("prune", {}).get("action") == "accepted"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(rounds, [r["train_accuracy"] for r in records], label="train (clients)", color="tab:gray")
    if ev:
        ax.plot(*zip(*ev), marker="o", ms=3, label="test (global model)", color="tab:blue")
    ax.set(xlabel="round", ylabel="accuracy", title="Accuracy")
    ax.legend(loc="best")
    axes[1].step(rounds, [r["params"] for r in records], where="mid", color="tab:green")
    axes[1].set(xlabel="round", ylabel="parameters", title="Parameters of the trained model")
    axes[2].plot(rounds, [r["cumulative_bytes"] / 1e6 for r in records], color="tab:red")
    axes[2].set(xlabel="round", ylabel="MB (up + down)", title="Cumulative communication")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for p in prunes:
            ax.axvline(p - 0.5, color="k", ls="--", lw=0.7, alpha=0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


_ROWS = (
    ("final test accuracy", "final_accuracy", lambda v: f"{100 * v:.2f}%"),
    ("parameters", "final_params", lambda v: f"{v:,}"),
    ("FLOPs / example (2xMACs)", "final_flops", lambda v: f"{v:,}"),
    ("conv widths", "widths", lambda v: ", ".join(f"{k}={w}" for k, w in v.items())),
    ("total bytes (up+down)", "bytes_total", lambda v: f"{v / 1e6:,.1f} MB"),
    ("TFLite float32 size", "tflite_bytes", lambda v: f"{v:,} B"),
    ("TFLite float32 latency (median, 1 thread)", "tflite_latency_us_median", lambda v: f"{v:,.1f} µs"),
)
_RATIO_KEYS = ("final_params", "final_flops", "bytes_total", "tflite_bytes", "tflite_latency_us_median")


def comparison_table(baseline: Mapping, pruned: Mapping) -> str:
    """A Markdown table comparing two ``summary.json`` dicts (pruned / baseline ratios)."""
    lines = ["| metric | FedAvg baseline | pruned | pruned / baseline |", "|---|---:|---:|---:|"]
    for label, key, fmt in _ROWS:
        a, b = baseline.get(key), pruned.get(key)
        ratio = ""
        if key in _RATIO_KEYS and a:
            ratio = f"{b / a:.3f}"
        elif key == "final_accuracy" and a is not None and b is not None:
            ratio = f"{100 * (b - a):+.2f} pts"
        lines.append(f"| {label} | {fmt(a) if a is not None else 'n/a'} | {fmt(b) if b is not None else 'n/a'} "
                     f"| {ratio} |")
    va, vb = baseline.get("tflite_variants", {}), pruned.get("tflite_variants", {})
    for name in [v for v in vb if v in va and v != "float32"]:
        for label, key, unit in (("size", "size_bytes", "B"),
                                 ("latency (median, 1 thread)", "latency_us_median", "µs")):
            a, b = va[name][key], vb[name][key]
            lines.append(f"| TFLite {name} {label} | {a:,.0f} {unit} | {b:,.0f} {unit} | {b / a:.3f} |")
    return "\n".join(lines) + "\n"


def comparison_markdown(baseline: Mapping, pruned: Mapping) -> str:
    """The whole ``comparison.md``: settings, the table and how pruning stopped."""
    cfg = pruned.get("config", {})
    head = (f"# FedAvg vs. automatic filter pruning ({cfg.get('dataset', '?')} / {cfg.get('model', '?')})\n\n"
            f"Same seed ({cfg.get('seed')}), same sampled clients: {cfg.get('rounds')} rounds, "
            f"{cfg.get('clients_per_round')} clients/round, {cfg.get('local_epochs')} local epochs, "
            f"batch {cfg.get('batch_size')}, client {cfg.get('client_optimizer', 'adam')} lr {cfg.get('client_lr')}; "
            f"pruning k={cfg.get('k')}, "
            f"weights={cfg.get('weights')}, max_prune_round={cfg.get('max_prune_round')}, "
            f"patience={cfg.get('patience')}.\n\n")
    tail = (f"\nAccepted prunes at the start of rounds: {pruned.get('prune_rounds', [])}. "
            f"Pruning stopped: {pruned.get('stop_reason') or 'not stopped'}.\n"
            f"FLOPs: TF-profiler convention (multiply-accumulate = 2 FLOPs). Bytes: float32 weights, "
            f"server->clients plus clients->server, summed over rounds. Latency: TFLite interpreter "
            f"(tflite-runtime) on this host, 1 thread, median.\n")
    return head + comparison_table(baseline, pruned) + tail
