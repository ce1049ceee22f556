"""Export a Keras model as the TFLite variants an app ships: files, sidecars, labels, parity.

Used by ``scripts/convert_model.py`` and by ``scripts/run_simulation.py`` for the final model.
"""

from __future__ import annotations

import gzip
import os
from typing import Callable, Sequence

from mobile import convert, model_card
from tff_prune.data import sample_images
from tff_prune.report import atomic_write_bytes, write_json


def export_variants(model, variants: Sequence[str], dataset: str, data_dir: str, output_dir: str,
                    filename: Callable[[str], str], representative_samples: int = 200, int8_io: bool = True,
                    parity_samples: int = 500, crop: bool = False, seed: int = 0,
                    qat_model=None, celeba_attribute: str = "male") -> list[dict]:
    """Converts ``model`` to each variant, checks parity on real test images, writes files.

    Writes ``filename(variant)`` (the ``.tflite``) and the same name with ``.json`` (the
    :func:`mobile.model_card.sidecar` plus the parity result) per variant, and ``labels.txt``.
    int8 is calibrated on ``representative_samples`` real training images. With ``qat_model``
    (a tfmot quantization-aware model) a ``qat_int8`` variant is added, converted from its
    learned ranges and checked against the QAT Keras model.

    Returns:
      one dict per variant: ``variant``, ``path``, ``sidecar`` path, ``size_bytes``, ``gzip_bytes``
      (the file gzip-compressed at level 9, what an app download of it costs; zeros compress) and the
      :func:`mobile.convert.parity` fields.

    Raises:
      ConversionError, DataError, ValueError: bad variant, data or sample counts.
    """
    rep = None
    if "int8" in variants:
        rep, _ = sample_images(dataset, data_dir, "train", representative_samples, seed=seed, femnist_crop=crop,
                               celeba_attribute=celeba_attribute)
    test_x, _ = sample_images(dataset, data_dir, "test", parity_samples, seed=seed + 1, femnist_crop=crop,
                              celeba_attribute=celeba_attribute)
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_bytes(os.path.join(output_dir, "labels.txt"),
                       ("\n".join(model_card.labels(dataset, celeba_attribute)) + "\n").encode())
    rows = []
    jobs = [(v, model) for v in variants] + ([("qat_int8", qat_model)] if qat_model is not None else [])
    for variant, source in jobs:
        if variant == "qat_int8":
            data = convert.convert_qat(source, int8_io=int8_io)
        else:
            data = convert.convert(source, variant, representative_data=rep, int8_io=int8_io)
        path = os.path.join(output_dir, filename(variant))
        atomic_write_bytes(path, data)
        check = convert.parity(source, data, test_x, variant)
        card = model_card.sidecar(data, dataset, variant, celeba_attribute)
        card.update(parity=check, labels_file="labels.txt",
                    representative_samples=len(rep) if variant == "int8" else None)
        sidecar = os.path.splitext(path)[0] + ".json"
        write_json(sidecar, card)
        rows.append({"variant": variant, "path": path, "sidecar": sidecar, "size_bytes": len(data),
                     "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)), **check})
    return rows


def size_table(rows: Sequence[dict]) -> str:
    """Markdown table of size and parity per variant (ratios against the first variant)."""
    lines = ["| variant | size (B) | size / first | top-1 agreement | max abs diff | within tolerance |",
             "|---|---:|---:|---:|---:|---|"]
    first = rows[0]["size_bytes"]
    for r in rows:
        ok = "FLAGGED: outside tolerance" if r["flagged"] else "yes"
        lines.append(f"| {r['variant']} | {r['size_bytes']:,} | {r['size_bytes'] / first:.3f} | "
                     f"{100 * r['top1_agreement']:.1f}% | {r['max_abs_diff']:.2e} | {ok} |")
    return "\n".join(lines) + "\n"
