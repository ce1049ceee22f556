#!/usr/bin/env python3
"""Convert a Keras model to the TFLite variants an Android app ships, and prove each one.

Example:
  python scripts/convert_model.py runs/demo/pruned/model.keras --variants float32,float16,dynamic,int8 \
      --output-dir runs/demo/android_assets

Writes, per variant, <name>_<variant>.tflite and <name>_<variant>.json (input/output shape,
dtype, value range, quantization scale and zero point, parity with Keras, size), plus labels.txt.
int8 is calibrated on real client training images (--representative-samples, >= 100) and
checked, like every variant, on real test images with tflite_runtime; a variant outside its
tolerance is flagged in the table and the exit code is 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mobile.convert import MIN_REPRESENTATIVE, ConversionError, parse_variants  # noqa: E402
from mobile.export import export_variants, size_table  # noqa: E402
from tff_prune.config import resolve_data_dir  # noqa: E402


def load_keras_model(path: str):
    """Loads a ``.keras``/``.h5`` model; raises ValueError with the path and cause if it is unreadable."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise ValueError(f"model file not found: {path}")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a corrupt file
        raise ValueError(f"cannot load Keras model {path}: {type(e).__name__}: {str(e).splitlines()[0]}. "
                         f"Is it a model saved with model.save('model.keras')?") from e


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns 0, 2 (bad input) or 3 (a variant flagged by the parity check)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Keras model file (.keras), e.g. the model.keras of a run")
    p.add_argument("--variants", default="float32,int8", help="comma list of float32,float16,dynamic,int8")
    p.add_argument("--output-dir", required=True, help="where the .tflite, .json and labels.txt go")
    p.add_argument("--dataset", default="femnist", choices=("femnist",), help="labels and input description")
    p.add_argument("--data-dir", default=None, help="folder with femnist_leaf_300w.npz (real data)")
    p.add_argument("--representative-samples", type=int, default=200,
                   help=f"real training images for int8 calibration (>= {MIN_REPRESENTATIVE})")
    p.add_argument("--float-io", action="store_true", help="int8 model with float32 input/output tensors")
    p.add_argument("--femnist-crop", action="store_true", help="the model was trained with --femnist-crop")
    args = p.parse_args(argv)
    try:
        variants = parse_variants(args.variants)
    except ConversionError as e:
        p.error(f"--variants: {e}")
    if "int8" in variants and args.representative_samples < MIN_REPRESENTATIVE:
        p.error(f"--representative-samples: int8 calibration needs >= {MIN_REPRESENTATIVE}, "
                f"got {args.representative_samples}")
    from tff_prune.data import DataError

    try:
        model = load_keras_model(args.model)
        stem = os.path.splitext(os.path.basename(args.model))[0]
        rows = export_variants(model, variants, args.dataset, resolve_data_dir(args.data_dir), args.output_dir,
                               lambda v: f"{stem}_{v}.tflite", args.representative_samples, not args.float_io,
                               crop=args.femnist_crop)
    except (ValueError, DataError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(size_table(rows))
    print(f"written to {args.output_dir}: " + ", ".join(os.path.basename(r["path"]) for r in rows)
          + ", their .json sidecars and labels.txt")
    return 3 if any(r["flagged"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
