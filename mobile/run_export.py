"""The export of a finished run: model.keras, the TFLite variants with sidecars, host latency, summary.json.

``summary.json`` is defined here (its fields are listed in the README's Outputs table); ``curves.png`` is drawn
by ``tff_prune.report``.
"""

from __future__ import annotations

import os

from tff_prune.config import ExperimentConfig


def export_and_summarize(config: ExperimentConfig, result, test_x, variants=("float32",), test_y=None) -> dict:
    """Saves model.keras and the TFLite variants, measures their latency, writes summary.json and curves.png.

    ``model.tflite`` is the float32 variant; others are ``model_<variant>.tflite``, each with a
    ``.json`` sidecar (I/O description and parity with Keras on real test images) and ``labels.txt``.
    After QAT, the float variants come from the QAT model's float weights and a ``qat_int8``
    variant (``model_qat_int8.tflite``) from its learned ranges; ``model_qat.h5`` is the QAT model.
    With ``test_y``, each variant's top-1 accuracy on the whole test set is reported.

    Returns:
      the summary dict (also written to ``<output_dir>/summary.json``).
    """
    import numpy as np

    from mobile import convert, host_benchmark
    from mobile.export import export_variants
    from tff_prune import report
    from tff_prune.federated import qat

    out = config.output_dir
    qat_model = result.model if qat.is_qat_model(result.model) else None
    float_model = result.model
    if qat_model is not None:
        arch = result.float_architecture
        float_model = qat.strip_quantization(qat_model, arch.__class__.from_config(arch.get_config()))
        # tfmot QAT models do not reload from the .keras format (variable lists differ); H5 does,
        # inside tff_prune.federated.qat.quantize_scope().
        _save_keras(qat_model, os.path.join(out, "model_qat.h5"))
    keras_path = _save_keras(float_model, os.path.join(out, "model.keras"))
    variants = ["float32"] + [v for v in variants if v != "float32"]
    rows = export_variants(float_model, variants, config.dataset, config.data_dir, out,
                           lambda v: "model.tflite" if v == "float32" else f"model_{v}.tflite",
                           crop=config.femnist_crop, seed=config.seed, qat_model=qat_model,
                           celeba_attribute=config.celeba_attribute)
    tflite = {}
    for row in rows:
        lat = host_benchmark.benchmark(row["path"], num_threads=1, num_runs=config.latency_runs,
                                       warmup_runs=20, inputs=test_x)
        tflite[row["variant"]] = {**row, "latency_us_median": lat["inference_median_us"], "latency": lat}
        if test_y is not None:
            with open(row["path"], "rb") as f:
                pred = convert.run_tflite(f.read(), test_x).argmax(-1)
            tflite[row["variant"]]["test_accuracy"] = float(np.mean(pred == test_y))
    tflite_path, tflite_bytes, latency = tflite["float32"]["path"], tflite["float32"]["size_bytes"], \
        tflite["float32"]["latency"]
    records = result.records
    summary = {
        "config": config.to_dict(),
        "rounds": records[-1]["round"],
        "initial_params": result.initial["params"], "final_params": result.final["params"],
        "final_nonzero_params": records[-1]["nonzero_params"],
        "final_kernel_sparsity": records[-1].get("kernel_sparsity"),
        "initial_flops": result.initial["flops"], "final_flops": result.final["flops"],
        "initial_widths": result.initial["widths"], "widths": result.final["widths"],
        "final_accuracy": report.last_accuracy(records),
        "best_accuracy": max((r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None),
                             default=None),
        "bytes_down_total": records[-1]["cumulative_bytes_down"], "bytes_up_total": records[-1]["cumulative_bytes_up"],
        "bytes_total": records[-1]["cumulative_bytes"],
        "prune_rounds": [r["round"] for r in records if r["prune"]["action"] == "accepted"],
        "stop_reason": result.stop_reason,
        "wall_seconds_total": sum(r["wall_seconds"] for r in records),
        "keras_path": keras_path, "tflite_path": tflite_path, "tflite_bytes": tflite_bytes,
        "tflite_latency_us_median": latency["inference_median_us"], "tflite_latency": latency,
        "tflite_variants": tflite,
    }
    if qat_model is not None:
        summary["qat"] = {
            "rounds": config.qat_rounds, "keras_qat_accuracy": report.last_accuracy(records),
            "tflite_qat_int8_accuracy": tflite["qat_int8"].get("test_accuracy"),
            "tflite_ptq_int8_accuracy": tflite.get("int8", {}).get("test_accuracy"),
            "tflite_float32_accuracy": tflite["float32"].get("test_accuracy"),
            "note": "float32/float16/dynamic/int8 (post-training) use the QAT model's float weights; "
                    "qat_int8 uses its federated-averaged quantization ranges",
        }
    report.write_json(os.path.join(out, report.SUMMARY_FILE), summary)
    title = f"{config.dataset}/{config.model} " + (
        "FedAvg baseline" if not config.prune else
        f"tfmot magnitude pruning (sparsity {config.target_sparsity:.3f})" if config.method == "magnitude" else
        f"auto pruning (budget {100 * config.max_accuracy_loss:g} pt)" if config.schedule == "auto" else
        f"paper's pruning (k={config.k}, {config.weights})")
    report.plot_curves(records, os.path.join(out, report.CURVES_FILE), title)
    return summary


def _save_keras(model, path: str) -> str:
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(os.path.dirname(path), f".{stem}.tmp{ext}")
    model.save(tmp)
    os.replace(tmp, path)
    return path


