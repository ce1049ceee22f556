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
    return _finish_round_axes(fig, axes, prunes, title, path, legend=False)


def _finish_round_axes(fig, axes, prunes: Sequence[int], title: str, path: str, legend: bool) -> str:
    """Grid, integer round ticks and a dashed line before every accepted prune on each axis; saves the figure."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.grid(alpha=0.3)
        if legend:
            ax.legend(loc="best")
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
    ("TFLite float32 latency at each run's end (median, 1 thread)*", "tflite_latency_us_median",
     lambda v: f"{v:,.1f} µs"),
)
# Latencies measured at each run's end ran at different times under different load: never divided.
_RATIO_KEYS = ("final_params", "final_flops", "bytes_total", "tflite_bytes")
# Settings that decide which clients are sampled in which round, and what they train.
SAMPLING_KEYS = ("dataset", "model", "seed", "rounds", "clients_per_round", "max_clients", "femnist_crop",
                 "celeba_attribute")
TRAINING_KEYS = ("local_epochs", "batch_size", "client_optimizer", "client_lr", "server_lr", "eval_every",
                 "qat_rounds")


class ComparisonError(ValueError):
    """Two runs that cannot be compared as baseline vs pruned; the message says why and what to pass."""


def read_summary(run_dir: str) -> dict:
    """Reads ``run_dir/summary.json``.

    Raises:
      ComparisonError: missing, not JSON (e.g. cut off), or not a run summary (no ``config``).
    """
    path = os.path.join(run_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        raise ComparisonError(f"no {SUMMARY_FILE} in {run_dir}; run tff-prune-run "
                              f"--output-dir {run_dir} first")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ComparisonError(f"{path} is corrupt, not JSON ({e}); rerun that run (or restore the file)") from e
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ComparisonError(f"{path} is not a run summary (no 'config' object); pass a run_simulation.py "
                              f"output folder")
    return data


def check_comparable(baseline: Mapping, pruned: Mapping) -> list[str]:
    """What differs between two runs besides pruning, as ``"key: a vs b"`` lines (empty: like for like).

    Raises:
      ComparisonError: the baseline was pruned (accepted prunes): the arguments are swapped or the
        wrong run was given.
    """
    if baseline.get("prune_rounds") or baseline.get("config", {}).get("prune"):
        raise ComparisonError(
            f"the baseline run was pruned (prune={baseline.get('config', {}).get('prune')}, accepted prunes at "
            f"rounds {baseline.get('prune_rounds', [])}); pass the --no-prune (FedAvg) run first: "
            f"compare_runs.py FEDAVG_DIR PRUNED_DIR")
    ca, cb = baseline.get("config", {}), pruned.get("config", {})
    diffs = [f"{k}: {ca.get(k)!r} vs {cb.get(k)!r}" for k in SAMPLING_KEYS + TRAINING_KEYS if ca.get(k) != cb.get(k)]
    if baseline.get("rounds") != pruned.get("rounds") and ca.get("rounds") == cb.get("rounds"):
        diffs.append(f"rounds run: {baseline.get('rounds')} vs {pruned.get('rounds')}")
    return diffs


def comparison_table(baseline: Mapping, pruned: Mapping) -> str:
    """A Markdown table comparing two ``summary.json`` dicts (pruned / baseline ratios).

    Run-end latencies are shown, never divided (each was measured at its own run's end, under
    different load); see :func:`side_by_side_table` for a measured ratio.
    """
    lines = ["| metric | FedAvg baseline | pruned | pruned / baseline |", "|---|---:|---:|---:|"]
    for label, key, fmt in _ROWS:
        a, b = baseline.get(key), pruned.get(key)
        ratio = ""
        if key in _RATIO_KEYS and a and b is not None:
            ratio = f"{b / a:.3f}"
        elif key == "final_accuracy" and a is not None and b is not None:
            ratio = f"{100 * (b - a):+.2f} pts"
        elif key == "tflite_latency_us_median":
            ratio = "not a ratio*"
        lines.append(f"| {label} | {fmt(a) if a is not None else 'n/a'} | {fmt(b) if b is not None else 'n/a'} "
                     f"| {ratio} |")
    va, vb = baseline.get("tflite_variants", {}), pruned.get("tflite_variants", {})
    for name in [v for v in vb if v in va and v != "float32"]:
        a, b = va[name].get("size_bytes"), vb[name].get("size_bytes")
        if a and b is not None:
            lines.append(f"| TFLite {name} size | {a:,.0f} B | {b:,.0f} B | {b / a:.3f} |")
    return "\n".join(lines) + "\n"


def side_by_side_table(measured: Mapping[str, Mapping]) -> str:
    """Markdown table of :func:`mobile.host_benchmark.compare_interleaved` results, one row per variant.

    Args:
      measured: variant -> compare_interleaved dict whose two labels are ``baseline`` and ``pruned``.
    """
    lines = ["| TFLite variant | FedAvg baseline (median µs) | pruned (median µs) | pruned / baseline time: median "
             "[p25-p75] (min-max) of the repetitions |", "|---|---:|---:|---:|"]
    for variant, m in measured.items():
        r = m["ratios"]["pruned"]
        lines.append(f"| {variant} | {m['models']['baseline']['median_us']:,.1f} | "
                     f"{m['models']['pruned']['median_us']:,.1f} | {r['median']:.3f} [{r['p25']:.3f}-{r['p75']:.3f}] "
                     f"({r['min']:.3f}-{r['max']:.3f}) |")
    return "\n".join(lines) + "\n"


def _pruning_settings(cfg: Mapping) -> str:
    """How the pruned run decided, in one line (the default mode's settings, the paper's, or tfmot's)."""
    if cfg.get("method") == "magnitude":
        return (f"tfmot magnitude pruning to sparsity {cfg.get('target_sparsity')} by round "
                f"{cfg.get('max_prune_round')}")
    if cfg.get("schedule", "paper") == "auto":
        return (f"default pruning (--schedule auto): budget {100 * cfg.get('max_accuracy_loss', 0):g} points of "
                f"validation accuracy on {cfg.get('val_clients')} clients per round, first step "
                f"{cfg.get('step_fraction')} of each group, patience {cfg.get('patience')}")
    return (f"the paper's pruning (--schedule paper): k={cfg.get('k')}, weights={cfg.get('weights')}, "
            f"max_prune_round={cfg.get('max_prune_round')}, patience={cfg.get('patience')}")


def comparison_markdown(baseline: Mapping, pruned: Mapping, differences: Sequence[str] | None = None,
                        measured: Mapping[str, Mapping] | None = None, latency_note: str = "") -> str:
    """The whole ``comparison.md``: settings, the table, side-by-side latency and how pruning stopped.

    Args:
      differences: :func:`check_comparable`'s lines; None: computed here. Only with none does the
        header say "same seed, same sampled clients".
      measured: variant -> :func:`mobile.host_benchmark.compare_interleaved` result (labels
        ``baseline`` and ``pruned``), or None (not measured; ``latency_note`` says why).
    """
    if differences is None:
        differences = check_comparable(baseline, pruned)
    cfg = pruned.get("config", {})
    settings = (f"{cfg.get('rounds')} rounds, "
                f"{cfg.get('clients_per_round')} clients/round, {cfg.get('local_epochs')} local epochs, "
                f"batch {cfg.get('batch_size')}, client {cfg.get('client_optimizer', 'adam')} lr {cfg.get('client_lr')}; "
                + _pruning_settings(cfg))
    title = f"# FedAvg vs. automatic filter pruning ({cfg.get('dataset', '?')} / {cfg.get('model', '?')})\n\n"
    if differences:
        head = title + ("**Not like for like.** The two runs differ besides pruning:\n\n"
                        + "".join(f"- {d}\n" for d in differences)
                        + f"\nPruned run: {settings}.\n\n")
    else:
        head = title + (f"Same seed ({cfg.get('seed')}), same sampled clients (same data, client pool, "
                        f"clients per round and rounds) and the same training settings: {settings}.\n\n")
    if measured:
        any_m = next(iter(measured.values()))
        lat = ("\n## Latency, measured side by side\n\nBoth runs' models timed in one process on this host "
               f"(tflite-runtime, {any_m['num_threads']} thread(s), XNNPACK {'on' if any_m['use_xnnpack'] else 'off'}),"
               f" interleaved: {any_m['repetitions']} repetitions of {any_m['runs_per_repetition']} invokes each, "
               "in alternating order (A B, B A, ...); a repetition's ratio divides the two block medians "
               "(< 1: the pruned model is faster).\n\n"
               + side_by_side_table(measured) + (f"\n{latency_note}\n" if latency_note else ""))
    else:
        lat = f"\nLatency side by side: not measured{': ' + latency_note if latency_note else ''}.\n"
    tail = (f"\nAccepted prunes at the start of rounds: {pruned.get('prune_rounds', [])}. "
            f"Pruning stopped: {pruned.get('stop_reason') or 'not stopped'}.\n"
            f"FLOPs: TF-profiler convention (multiply-accumulate = 2 FLOPs). Bytes: float32 weights, "
            f"server->clients plus clients->server, summed over rounds.\n"
            f"\n\\* Latency at each run's end: TFLite interpreter (tflite-runtime) on this host, 1 thread, median, "
            f"measured when that run finished, under whatever load the machine had then; kept in summary.json, "
            f"never divided by each other. The ratio is in the side-by-side section.\n")
    return head + comparison_table(baseline, pruned) + lat + tail


def plot_comparison(baseline_records: Sequence[Mapping], pruned_records: Sequence[Mapping], path: str,
                    title: str = "", labels: tuple[str, str] = ("FedAvg baseline", "pruned")) -> str:
    """Saves one PNG with both runs on the same axes: test accuracy, parameters and cumulative MB
    (up + down) against round; the pruned run's accepted prunes are dashed lines.

    Args:
      baseline_records, pruned_records: the runs' ``metrics.jsonl`` records (:func:`read_metrics`).

    Raises:
      ValueError: a run without records.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, recs in zip(labels, (baseline_records, pruned_records)):
        if not recs:
            raise ValueError(f"the {name} run has no {METRICS_FILE} records to plot")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for recs, name, color in ((baseline_records, labels[0], "tab:gray"), (pruned_records, labels[1], "tab:blue")):
        rounds = [r["round"] for r in recs]
        ev = [(r["round"], r["eval_accuracy"]) for r in recs if r.get("eval_accuracy") is not None]
        if ev:
            axes[0].plot(*zip(*ev), marker="o", ms=2, label=name, color=color)
        axes[1].step(rounds, [r["params"] for r in recs], where="mid", label=name, color=color)
        axes[2].plot(rounds, [r["cumulative_bytes"] / 1e6 for r in recs], label=name, color=color)
    axes[0].set(xlabel="round", ylabel="test accuracy", title="Accuracy (global model)")
    axes[1].set(xlabel="round", ylabel="parameters", title="Parameters of the trained model")
    axes[2].set(xlabel="round", ylabel="MB (up + down)", title="Cumulative communication")
    prunes = [r["round"] for r in pruned_records if r.get("prune", {}).get("action") == "accepted"]
    return _finish_round_axes(fig, axes, prunes, title, path, legend=True)
