"""Export a Keras model as the TFLite variants an app ships: files, metadata, sidecars, labels, parity.

Used by ``tff-prune-convert`` and by ``tff-prune-run`` for the final model.
Every ``.tflite`` carries TFLite Metadata (:mod:`mobile.metadata`: name, description, version,
author, licence, input normalization and range, quantization, labels.txt packed inside); the JSON
sidecar beside it holds the same facts.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Callable, Optional, Sequence

from mobile import convert, metadata, model_card
from tff_prune.data import sample_images
from tff_prune.report import atomic_write_bytes


def export_variants(model, variants: Sequence[str], dataset: str, data_dir: str, output_dir: str,
                    filename: Callable[[str], str], representative_samples: int = 200, int8_io: bool = True,
                    parity_samples: int = 500, crop: bool = False, seed: int = 0,
                    qat_model=None, celeba_attribute: str = "male", io_dtype: Optional[str] = None,
                    model_name: Optional[str] = None, version: Optional[str] = None,
                    author: Optional[str] = None, license_text: Optional[str] = None) -> list[dict]:
    """Converts ``model`` to each variant, adds TFLite Metadata, checks parity on real test images, writes files.

    Writes ``filename(variant)`` (the ``.tflite``, with metadata) and the same name with ``.json`` (the
    :func:`mobile.model_card.sidecar` plus the parity result) per variant, and ``labels.txt``.
    int8 is calibrated on ``representative_samples`` real training images, with ``io_dtype`` I/O
    (default ``uint8``; ``int8_io=False`` means float32, as before). With ``qat_model`` (a tfmot
    quantization-aware model) a ``qat_int8`` variant is added, converted from its learned ranges and
    checked against the QAT Keras model. Everything is checked before the first file is written.

    Args:
      model_name, version, author, license_text: the metadata's general fields; defaults from
        :func:`mobile.metadata.general_info` (licence: the training data's terms).

    Returns:
      one dict per variant: ``variant``, ``path``, ``sidecar`` path, ``size_bytes``, ``gzip_bytes``
      (the file gzip-compressed at level 9, what an app download of it costs; zeros compress) and the
      :func:`mobile.convert.parity` fields.

    Raises:
      ConversionError: bad variant or I/O dtype, dynamic input shape, too few calibration images.
      ValueError: ``representative_samples`` beyond the training images (names the flag), labels
        or channels that do not fit ``dataset``. DataError: missing or corrupt data.
    """
    io = convert.resolve_io_dtype(int8_io, io_dtype)
    shape = convert.check_static_input(model)
    names = model_card.labels(dataset, celeba_attribute)
    model_card.check_model_matches(dataset, shape, int(model.output_shape[-1]), celeba_attribute)
    rep = None
    if "int8" in variants:
        try:
            rep, _ = sample_images(dataset, data_dir, "train", representative_samples, seed=seed,
                                   femnist_crop=crop, celeba_attribute=celeba_attribute)
        except ValueError as e:
            raise ValueError(f"--representative-samples {representative_samples}: {e} (real {dataset} training "
                             f"images available); pass a number in that range, >= {convert.MIN_REPRESENTATIVE}") \
                from e
    test_x, _ = sample_images(dataset, data_dir, "test", parity_samples, seed=seed + 1, femnist_crop=crop,
                              celeba_attribute=celeba_attribute)
    rows, outputs = [], []
    jobs = [(v, model) for v in variants] + ([("qat_int8", qat_model)] if qat_model is not None else [])
    for variant, source in jobs:
        if variant == "qat_int8":
            plain = convert.convert_qat(source, io_dtype=io)
        else:
            plain = convert.convert(source, variant, representative_data=rep, io_dtype=io)
        general = metadata.general_info(dataset, variant, celeba_attribute, model_name, version, author,
                                        license_text)
        facts = model_card.sidecar(plain, dataset, variant, celeba_attribute, general)
        data = metadata.add_metadata(plain, facts, names, general["name"], general["description"],
                                     general["version"], general["author"], general["license"])
        check = convert.parity(source, data, test_x, variant)
        card = model_card.sidecar(data, dataset, variant, celeba_attribute, general)
        card.update(parity=check, labels_file="labels.txt", metadata="TFLite Metadata inside the .tflite "
                    "(mobile/metadata.py): these facts, normalization mean 0 / std 255, labels.txt packed",
                    representative_samples=len(rep) if variant == "int8" else None)
        card, non_finite = model_card.finite_json(card)
        if non_finite:
            card["non_finite_values"] = non_finite  # e.g. a NaN output: stored as null, and flagged
        outputs.append((variant, data, card, check))
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_bytes(os.path.join(output_dir, "labels.txt"), ("\n".join(names) + "\n").encode())
    for variant, data, card, check in outputs:
        path = os.path.join(output_dir, filename(variant))
        atomic_write_bytes(path, data)
        sidecar = os.path.splitext(path)[0] + ".json"
        atomic_write_bytes(sidecar, (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())
        check = model_card.finite_json(check)[0]
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
        diff = "n/a (not finite)" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.2e}"
        lines.append(f"| {r['variant']} | {r['size_bytes']:,} | {r['size_bytes'] / first:.3f} | "
                     f"{100 * r['top1_agreement']:.1f}% | {diff} | {ok} |")
    return "\n".join(lines) + "\n"
