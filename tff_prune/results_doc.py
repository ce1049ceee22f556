"""docs/RESULTS.md (and its plots) from the runs under results/ (``tff_prune.experiments``' folders).

Nothing in it is typed by hand: every number comes from the runs' summary.json and metrics.jsonl, and the
authors' numbers from ``tff_prune.experiments.EXPERIMENTS``. Experiments with missing runs are reported as such.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence

from tff_prune import report

RUN_ORDER = ("fedavg", "default", "default_loss2", "reinit", "inherit", "inherit_round8", "magnitude", "inherit_low")
OPTIONAL_RUNS = ("default_loss2",)  # tff_prune.experiments.EXTRA_RUNS: a row only once run, never "not run yet"
DISCUSSION = "results_discussion.md"  # hand-written, beside the output, included verbatim


def _planned(name: str) -> dict:
    """experiment.json's fields for an experiment reproduce.py defines but has not run (no seed yet)."""
    from tff_prune.experiments import EXPERIMENTS, prune_window

    exp = EXPERIMENTS[name]
    return {"name": name, **dataclasses.asdict(exp), "planned_rounds": exp.rounds, "rounds": exp.rounds,
            "max_prune_round": prune_window(exp, None), "seed": None}


def _load(results: str, name: str, seed: int = 0) -> dict:
    """One experiment's runs on one seed (reproduce.seed_dir): experiment, runs (summary + records), centralized."""
    from tff_prune.experiments import CENTRALIZED, seed_dir

    folder = seed_dir(results, name, seed)
    path = os.path.join(folder, "experiment.json")
    exp = report.read_json(path) if os.path.isfile(path) else _planned(name)
    runs = {}
    for run in RUN_ORDER:
        d = os.path.join(folder, run)
        if os.path.isfile(os.path.join(d, "summary.json")):
            runs[run] = {"summary": report.read_json(os.path.join(d, "summary.json")),
                         "records": report.read_metrics(os.path.join(d, report.METRICS_FILE))}
    central = os.path.join(folder, CENTRALIZED, "summary.json")
    return {"experiment": exp, "runs": runs,
            "centralized": report.read_json(central) if os.path.isfile(central) else None}


def extra_seeds(results: str, name: str) -> list[int]:
    """Seeds S > 0 with a results/<name>/seedS/experiment.json (reproduce.py --seed S), ascending."""
    folder = os.path.join(results, name)
    if not os.path.isdir(folder):
        return []
    seeds = [int(d[4:]) for d in os.listdir(folder) if d.startswith("seed") and d[4:].isdigit()
             and os.path.isfile(os.path.join(folder, d, "experiment.json"))]
    return sorted(seeds)


def _mean_pp(values: Sequence[Optional[float]]) -> str:
    have = [v for v in values if v is not None]
    return f"{sum(have) / len(have):+.2f}" if have else "–"


def seeds_table(entries: dict) -> str:
    """Markdown table of the runs across seeds; empty string unless two or more seeds have runs.

    Args:
      entries: seed -> ``_load`` entry of that seed.

    Per run and seed: the mean test accuracy of the last 10 evaluations, its difference to the same seed's
    FedAvg run (percentage points; runs on one seed sample the same clients) and its mean over the seeds
    that have both runs, the final parameter count (non-zero for ``magnitude``) and the cumulative bytes as a
    fraction of that seed's FedAvg. "mean over seeds" averages the seeds that have the run.
    """
    seeds = [s for s in sorted(entries) if entries[s]["runs"]]
    if len(seeds) < 2:
        return ""
    head = " / ".join(f"seed {s}" for s in seeds)
    lines = [f"| run | mean acc, last 10 evals ({head}) | mean over seeds | vs FedAvg, same seed (pp) | "
             f"mean difference (pp) | params ({head}) | bytes vs FedAvg |", "|---|---:|---:|---:|---:|---:|---:|"]
    for run in RUN_ORDER:
        acc, diff, params, ratio = [], [], [], []
        for s in seeds:
            runs = entries[s]["runs"]
            if run not in runs:
                acc.append(None), diff.append(None), params.append(None), ratio.append(None)
                continue
            summary, a = runs[run]["summary"], last_mean(runs[run]["records"])
            base = runs.get("fedavg")
            acc.append(a)
            diff.append(None if base is None or a is None else 100 * (a - last_mean(base["records"])))
            params.append(summary["final_nonzero_params"] if run == "magnitude" else summary["final_params"])
            ratio.append(None if base is None else summary["bytes_total"] / base["summary"]["bytes_total"])
        if all(a is None for a in acc):
            continue
        have = [a for a in acc if a is not None]
        partial = "" if len(have) == len(seeds) else f" ({len(have)} of {len(seeds)} seeds)"
        lines.append(
            f"| {run} | {' / '.join(_pct(a) for a in acc)} | {_pct(sum(have) / len(have))}{partial} | "
            f"{' / '.join('–' if d is None else f'{d:+.2f}' for d in diff)} | {_mean_pp(diff)} | "
            f"{' / '.join('–' if n is None else f'{n:,}' for n in params)} | "
            f"{' / '.join('–' if r is None else f'{r:.2f}×' for r in ratio)} |")
    return "\n".join(lines) + "\n"


def centralized_line(entry: dict) -> str:
    """One Markdown paragraph: the centralized reference's accuracy, or how to run it."""
    from tff_prune.experiments import CENTRALIZED

    c, name = entry["centralized"], entry["experiment"]["name"]
    if c is None:
        return (f"Centralized reference: not run yet (`tff-prune-reproduce --experiment {name} "
                f"--runs {CENTRALIZED}`).\n")
    return (f"Centralized reference (no federation: the same model, batch {c['batch_size']} and Adam {c['lr']:g} "
            f"on the {c['num_train_clients']} training clients' {c['num_train_examples']:,} examples pooled, "
            f"{c['epochs']} epochs): test accuracy {_pct(c['final_accuracy'])} after the last epoch, best "
            f"{_pct(c['best_accuracy'])} (epoch {c['best_epoch']}, chosen on the test set); predicting the test "
            f"set's majority class scores {_pct(c['test_majority'])}.\n")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def last_mean(records: Sequence[dict], n: int = 10) -> Optional[float]:
    """Mean test accuracy of the last ``n`` evaluated rounds (one evaluation is noisy on small test sets)."""
    acc = [r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None][-n:]
    return sum(acc) / len(acc) if acc else None


def _hours(seconds: Optional[float]) -> str:
    """Wall time of a run's rounds (sum of ``wall_seconds``) as ``1 h 05 min``; '–' when unknown."""
    if seconds is None:
        return "–"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def table(entry: dict) -> str:
    """Markdown table of one experiment: our runs and the authors' numbers."""
    exp, runs = entry["experiment"], entry["runs"]
    base = runs.get("fedavg", {}).get("summary")
    lines = ["| run | final acc | mean acc, last 10 evals | best acc | params | FLOPs | bytes up | bytes down | "
             "bytes vs FedAvg | "
             "TFLite f32 / int8 (B) | latency f32 / int8 (µs) | int8 acc | prunes (rounds) | stop | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for run in RUN_ORDER:
        if run not in runs:
            if run not in OPTIONAL_RUNS:
                lines.append(f"| {run} | not run yet | | | | | | | | | | | | | |")
            continue
        s = runs[run]["summary"]
        tv = s["tflite_variants"]
        ratio = (s["bytes_total"] / base["bytes_total"]) if base else None
        int8 = tv.get("int8", {})
        params = f"{s['initial_params']:,} → {s['final_params']:,}"
        if run == "magnitude":
            params += f" ({s['final_nonzero_params']:,} non-zero)"
        lines.append(
            f"| {run} | {_pct(s['final_accuracy'])} | {_pct(last_mean(runs[run]['records']))} | "
            f"{_pct(s['best_accuracy'])} | "
            f"{params} | {s['initial_flops']:,} → {s['final_flops']:,} | "
            f"{s['bytes_up_total'] / 1e6:.1f} MB | {s['bytes_down_total'] / 1e6:.1f} MB | "
            f"{'–' if ratio is None else f'{ratio:.2f}×'} | "
            f"{tv['float32']['size_bytes']:,} / {int8.get('size_bytes', 0):,} | "
            f"{tv['float32']['latency_us_median']:.0f} / {int8.get('latency_us_median', float('nan')):.0f} | "
            f"{_pct(int8.get('test_accuracy'))} | {s['prune_rounds'] or '–'} | {s['stop_reason'] or '–'} | "
            f"{_hours(s.get('wall_seconds_total'))} |")
    pa = exp["paper"]
    if pa.get("baseline_acc") is None:  # not one of the paper's experiments (e.g. LEAF's CelebA task)
        return "\n".join(lines) + "\n"
    lines.append(f"| **authors** ({pa['rounds']} rounds, {pa['clients_per_round']} clients/round) | "
                 f"{pa['baseline_acc']:.2f}% → {pa['pruned_acc']:.2f}% | | | "
                 f"{pa['params'][0]:,} → {pa['params'][1]:,} | "
                 f"{pa['flops'][0]:,} → {pa['flops'][1]:,} | | | ≤ 0.2× (claimed) | | | | | | |")
    return "\n".join(lines) + "\n"


def baseline_table(entry: dict) -> str:
    """Structured (``inherit``) against unstructured (``magnitude``, tfmot) pruning at the same non-zero budget.

    Empty string if either run is missing.
    """
    runs = entry["runs"]
    if "inherit" not in runs or "magnitude" not in runs:
        return ""
    lines = ["| run | final acc | non-zero params | stored params | TFLite float32 (B) | gzip (B) | "
             "TFLite sparse (B) | latency float32 (µs) | latency sparse (µs) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in ("inherit", "magnitude"):
        s = runs[run]["summary"]
        tv = s["tflite_variants"]
        sp = tv.get("sparse")
        nonzero, gz = s.get("final_nonzero_params"), tv["float32"].get("gzip_bytes")
        sp_size = "–" if sp is None else f"{sp['size_bytes']:,}"
        sp_lat = "–" if sp is None else f"{sp['latency_us_median']:.0f}"
        lines.append(
            f"| {run} | {_pct(s['final_accuracy'])} | {'–' if nonzero is None else f'{nonzero:,}'} | "
            f"{s['final_params']:,} | {tv['float32']['size_bytes']:,} | {'–' if gz is None else f'{gz:,}'} | "
            f"{sp_size} | {tv['float32']['latency_us_median']:.0f} | {sp_lat} |")
    return "\n".join(lines) + "\n"


def plot(entry: dict, path: str) -> str:
    """Accuracy, parameters and cumulative bytes against round for the runs present (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for run, data in entry["runs"].items():
        recs = data["records"]
        ev = [(r["round"], r["eval_accuracy"]) for r in recs if r.get("eval_accuracy") is not None]
        axes[0].plot([a for a, _ in ev], [100 * b for _, b in ev], label=run)
        axes[1].plot([r["round"] for r in recs], [r.get("nonzero_params", r["params"]) if run == "magnitude"
                                                  else r["params"] for r in recs], label=run)
        axes[2].plot([r["round"] for r in recs], [r["cumulative_bytes"] / 1e6 for r in recs], label=run)
    for ax, title in zip(axes, ("test accuracy (%)", "parameters (magnitude: non-zero)",
                                "cumulative bytes (MB, up + down)")):
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    if entry.get("centralized"):
        axes[0].axhline(100 * entry["centralized"]["final_accuracy"], color="black", ls="--", lw=1,
                        label=f"centralized ({entry['centralized']['epochs']} epochs)")
    axes[0].legend()
    fig.suptitle(entry["experiment"]["name"])
    fig.tight_layout()
    return report.save_figure(fig, path)


TRIALS = "trials"  # results/trials/: metrics.jsonl files of diagnostic FedAvg runs outside reproduce.py
# Their names: celeba_<model>_fedavg_<client optimizer>_<N>clients_<R>rounds.jsonl
TRIAL_NAME = re.compile(r"^celeba_(?P<model>[a-z0-9]+)_fedavg_(?P<optimizer>[a-z_]+)_\d+clients_\d+rounds$")


def _male_curves(results: str) -> list[dict]:
    """Every FedAvg curve on CelebA ``male`` under ``results``: reproduce.py's fedavg runs (seed 0) and the
    diagnostic runs in results/trials/celeba_*.jsonl. Each: label, model, optimizer, clients, rounds, records."""
    curves = []
    for name in sorted(os.listdir(results)) if os.path.isdir(results) else []:
        path = os.path.join(results, name, "experiment.json")
        if not os.path.isfile(path):
            continue
        exp = report.read_json(path)
        run = os.path.join(results, name, "fedavg", report.METRICS_FILE)
        if exp["dataset"] != "celeba" or exp.get("celeba_attribute", "male") != "male" or not os.path.isfile(run):
            continue
        records = report.read_metrics(run)
        curves.append({"label": f"{name}/fedavg", "model": exp["model"],
                       "optimizer": f"{exp.get('client_optimizer', 'adam')} {exp.get('client_lr', 1e-3):g}",
                       "clients": exp["clients_per_round"], "records": records})
    folder = os.path.join(results, TRIALS)
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.startswith("celeba_") and f.endswith(".jsonl"):
            records = report.read_metrics(os.path.join(folder, f))
            if not records:
                continue
            stem = f[:-len(".jsonl")]
            named = TRIAL_NAME.match(stem)
            curves.append({"label": f"{TRIALS}/{stem}", "model": named["model"] if named else "–",
                           "optimizer": named["optimizer"] if named else "–",
                           "clients": len(records[0].get("clients", [])) or "–", "records": records})
    return [c for c in curves if any(r.get("eval_accuracy") is not None for r in c["records"])]


def male_variants(results: str, png: str) -> str:
    """Markdown section (and the PNG at ``png``): the test accuracy of every FedAvg variant tried on CelebA
    ``male`` against round, with the centralized references and the majority class; empty string if none.

    The table gives, per curve, its rounds, clients per round, the mean of its last 10 evaluations and its best
    evaluation (the same numbers as the experiment tables for reproduce.py's runs).
    """
    curves = _male_curves(results)
    if not curves:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    lines = ["| curve | model | client optimizer, lr | clients per round | rounds | mean acc, last 10 evals | "
             "best acc |", "|---|---|---|---:|---:|---:|---:|"]
    for c in curves:
        ev = [(r["round"], r["eval_accuracy"]) for r in c["records"] if r.get("eval_accuracy") is not None]
        ax.plot([a for a, _ in ev], [100 * b for _, b in ev], marker=".", lw=1, label=c["label"])
        lines.append(f"| {c['label']} | {c['model']} | {c['optimizer']} | {c['clients']} | "
                     f"{c['records'][-1]['round']} | {_pct(last_mean(c['records']))} | "
                     f"{_pct(max(b for _, b in ev))} |")
    majority = None
    for name in ("celeba_cnn", "celeba_resnet"):
        central = os.path.join(results, name, "centralized", "summary.json")
        if os.path.isfile(central):
            c = report.read_json(central)
            majority = c["test_majority"]
            ax.axhline(100 * c["final_accuracy"], ls="--", lw=1, color="black" if name == "celeba_cnn" else "gray",
                       label=f"{name} centralized ({c['epochs']} epochs)")
    if majority is not None:
        ax.axhline(100 * majority, ls=":", lw=1, color="red", label="majority class")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("CelebA `male`: FedAvg variants tried")
    fig.tight_layout()
    report.save_figure(fig, png)
    return "\n".join(lines) + "\n"


def render(results: str, output: str) -> str:
    """Writes ``output`` (Markdown) and one PNG per experiment in ``<output folder>/results/``; returns the Markdown.

    ``<output folder>/results_discussion.md`` (hand-written), when present, is appended verbatim.
    """
    from tff_prune.experiments import EXPERIMENTS

    ran = sorted(d for d in os.listdir(results) if os.path.isfile(os.path.join(results, d, "experiment.json")))
    names = ran + [n for n in EXPERIMENTS if n not in ran]  # experiments not started last, with their plan
    out_dir = os.path.dirname(os.path.abspath(output))
    parts = ["# Results: reproducing the paper\n",
             "Generated by `tff-prune-results` from `results/*/` (written by `tff-prune-reproduce`); "
             "do not edit by hand. Accuracy is the global model's test accuracy; FLOPs per example follow the "
             "TF profiler (a multiply-accumulate is 2 FLOPs); bytes are float32 weights moved (down: all "
             "weights to each sampled client, for `magnitude` also its float32 masks; up: trainable weights and "
             "BatchNorm statistics); TFLite latency is the host median (tflite_runtime, 1 thread, XNNPACK). "
             "Host latency of every variant at 1 and 2 threads and peak memory per round are in the README's "
             "Performance section (`benchmarks/`).\n"]
    for name in names:
        entry = _load(results, name)
        exp = entry["experiment"]
        parts.append(f"## {name}\n")
        if exp.get("client_optimizer", "adam") == "shared_adam":
            parts.append(f"**Client optimizer:** the paper's Adam (lr {exp['client_lr']:g}) with its moments and step "
                         "count held by the server, continued by every client and averaged back each round "
                         "(`--client-optimizer shared_adam`); the authors' loop hands one Adam from client to "
                         "client within a round and resets it every round; TFF's FedAvg starts every client from "
                         "fresh moments, which does not federate `male` here (Discussion, CelebA).\n")
        elif exp.get("client_optimizer", "adam") != "adam":
            parts.append(f"**Not the paper's client optimizer:** clients train with {exp['client_optimizer'].upper()}, "
                         f"lr {exp['client_lr']:g} (the authors: Adam, lr 1e-3).\n")
        if exp["seed"] is None:
            parts.append(f"**Not run yet.** Planned: {exp['dataset']} / {exp['model']}, k = {exp['k']}, "
                         f"{exp['rounds']} rounds, {exp['clients_per_round']} clients per round, prunes allowed "
                         f"on the aggregates of rounds 1..{exp['max_prune_round']} "
                         f"(`tff-prune-reproduce --experiment {name}`).\n")
        else:
            parts.append(f"{exp['dataset']} / {exp['model']}, k = {exp['k']}, {exp['rounds']} rounds, "
                         f"{exp['clients_per_round']} clients per round, prunes allowed on the aggregates of "
                         f"rounds 1..{exp['max_prune_round']}, seed {exp['seed']}; all runs sample the same "
                         f"clients.\n")
        if exp.get("planned_rounds", exp["rounds"]) > exp["rounds"]:
            parts.append(f"**Trial length:** {exp['rounds']} of the planned {exp['planned_rounds']} rounds "
                         f"(`tff-prune-reproduce --rounds`); not a reproduction yet.\n")
        parts.append(table(entry))
        parts.append(centralized_line(entry))
        across = seeds_table({0: entry, **{s: _load(results, name, s) for s in extra_seeds(results, name)}})
        if across:
            parts.append(f"Across seeds (seed {exp['seed']} is the table above; each seed samples other clients and "
                         "starts from other weights; one seed's runs share their clients):\n")
            parts.append(across)
        if baseline_table(entry):
            parts.append("Structured vs unstructured pruning (tfmot `prune_low_magnitude`, same non-zero budget "
                         "as `inherit`): file sizes, gzip-compressed float32 file, TFLite's sparse format "
                         "(`Optimize.EXPERIMENTAL_SPARSITY`) and host latency (1 thread).\n")
            parts.append(baseline_table(entry))
        if exp["paper"].get("note"):
            parts.append(f"Authors' note: {exp['paper']['note']}.\n")
        if entry["runs"] or entry["centralized"]:
            img = os.path.join(out_dir, "results", f"{name}.png")
            plot(entry, img)
            parts.append(f"![{name}](results/{name}.png)\n")
    male = male_variants(results, os.path.join(out_dir, "results", "celeba_male_variants.png"))
    if male:
        parts.append("## CelebA `male`: every FedAvg variant tried\n")
        parts.append("The federated runs above and the diagnostic runs in `results/trials/` (their file names give "
                     "model, client optimizer, clients per round and rounds), test accuracy on the 28 test "
                     "celebrities against round; why they differ is in the Discussion (CelebA).\n")
        parts.append(male)
        parts.append("![celeba_male_variants](results/celeba_male_variants.png)\n")
    discussion = os.path.join(out_dir, DISCUSSION)
    if os.path.isfile(discussion):
        with open(discussion) as f:
            parts.append(f.read())
    text = "\n".join(parts)
    report.atomic_write_bytes(output, text.encode())
    return text
