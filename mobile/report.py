"""Tables and charts for benchmark results (host or device; same schema).

A result is a dict with at least ``model`` and ``inference_avg_us`` (µs); the first
result is the reference for the speed-up column. Rows and bars are keyed by ``label`` (the run),
else by the shortest distinct path suffix (:func:`mobile.host_benchmark.unique_labels`), so two
files both named ``model.tflite`` never collide.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

COLUMNS = (("init_us", "init µs"), ("first_inference_us", "first µs"), ("inference_avg_us", "mean µs"),
           ("inference_median_us", "median µs"), ("inference_p95_us", "p95 µs"), ("inference_std_us", "std µs"))


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:,.1f}"


def names(results: Sequence[Mapping]) -> list[str]:
    """One distinct name per result: its ``label``, else a distinct suffix of its ``model`` path."""
    from mobile.host_benchmark import unique_labels

    fallback = unique_labels([str(r["model"]) for r in results]) if results else []
    out = [r.get("label") or f for r, f in zip(results, fallback)]
    return out if len(set(out)) == len(out) else fallback


def table(results: Sequence[Mapping]) -> str:
    """A Markdown table, one row per model, with size and speed-up versus the first model."""
    head = "| model | size (B) | " + " | ".join(c[1] for c in COLUMNS) + " | speed-up vs first |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    ref = results[0].get("inference_median_us") or results[0].get("inference_avg_us") if results else None
    for r, name in zip(results, names(results)):
        t = r.get("inference_median_us") or r.get("inference_avg_us")
        speed = f"{ref / t:.2f}x" if ref and t else "n/a"
        size = r.get("model_bytes")
        lines.append(f"| {name} | {size:,} | " if size is not None else f"| {name} | n/a | ")
        lines[-1] += " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + f" | {speed} |"
    return "\n".join(lines) + "\n"


def bar_chart(results: Sequence[Mapping], path: str, title: str) -> str:
    """Saves a PNG bar chart of median (else mean) latency per model, with p5-p95 whiskers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = names(results)
    mid = [r.get("inference_median_us") or r["inference_avg_us"] for r in results]
    lo = [m - r.get("inference_p5_us", m) for m, r in zip(mid, results)]
    hi = [r.get("inference_p95_us", m) - m for m, r in zip(mid, results)]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(results)), 4))
    ax.bar(range(len(labels)), mid, yerr=[lo, hi], capsize=4, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels)
    ax.set(ylabel="latency per inference (µs)", title=title)
    ax.grid(axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    from tff_prune.report import save_figure

    return save_figure(fig, path)


def save(results: Sequence[Mapping], output_dir: str, name: str, title: str) -> dict[str, str]:
    """Writes ``<name>.json`` (results), ``<name>.md`` (table) and ``<name>.png`` (chart), atomically.

    Returns:
      the three paths by kind (``json``, ``markdown``, ``png``).
    """
    from tff_prune.report import atomic_write_bytes, write_json

    os.makedirs(output_dir, exist_ok=True)
    paths = {"json": os.path.join(output_dir, f"{name}.json"), "markdown": os.path.join(output_dir, f"{name}.md"),
             "png": os.path.join(output_dir, f"{name}.png")}
    write_json(paths["json"], {"title": title, "results": list(results)})
    atomic_write_bytes(paths["markdown"], (f"# {title}\n\n" + table(results)).encode())
    bar_chart(results, paths["png"], title)
    return paths


def publish(results: Sequence[Mapping], output_dir: str, name: str, title: str) -> dict[str, str]:
    """:func:`save`, then print the table and the written paths (the benchmark CLIs' output)."""
    paths = save(results, output_dir, name, title)
    print(table(results))
    print("written: " + ", ".join(paths.values()))
    return paths


def op_profile_chart(profile: Mapping, path: str, title: str, top: int = 15) -> str:
    """Saves a PNG of an op profile (:func:`mobile.benchmark_model.parse_op_profile`): the ``top`` slowest
    ops (ms per inference, by name) and the time per node type."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tff_prune.report import save_figure

    ops = sorted(profile["ops"], key=lambda o: o.get("avg_ms", 0.0), reverse=True)[:top][::-1]
    types = sorted(profile.get("by_type") or [], key=lambda t: t.get("avg_ms", 0.0))
    fig, axes = plt.subplots(1, 2 if types else 1, figsize=(12 if types else 7, max(3, 0.35 * len(ops) + 1)),
                             squeeze=False)
    ax = axes[0][0]
    ax.barh(range(len(ops)), [o.get("avg_ms", 0.0) for o in ops], color="tab:blue")
    ax.set_yticks(range(len(ops)), [f"{o.get('node_type', '?')} {o.get('name', '')}"[:48] for o in ops], fontsize=7)
    ax.set(xlabel="ms per inference (avg)", title=f"slowest {len(ops)} ops")
    if types:
        ax = axes[0][1]
        ax.barh(range(len(types)), [t.get("avg_ms", 0.0) for t in types], color="tab:orange")
        ax.set_yticks(range(len(types)), [t.get("node_type", "?") for t in types], fontsize=8)
        ax.set(xlabel="ms per inference (avg)", title="by node type")
    for row in axes:
        for a in row:
            a.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
