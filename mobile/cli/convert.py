"""Convert a Keras model to the TFLite variants an Android app ships, and prove each one.

Example:
  tff-prune-convert runs/demo/pruned/model.keras --variants float32,float16,dynamic,int8 \
      --output-dir runs/demo/android_assets

Writes, per variant, <name>_<variant>.tflite with TFLite Metadata inside (name, description,
version, author, licence, input normalization mean 0 / std 255 and range, quantization, labels.txt
packed: what MediaPipe Tasks, the TFLite Task Library and ML Model Binding read) and
<name>_<variant>.json (the same facts: input/output shape, dtype, value range, quantization scale
and zero point, parity with Keras, size), plus labels.txt. Any classifier the toolkit trains
converts: FEMNIST (28x28x1 -> 62) and CelebA (84x84x3 -> 2) are told apart by the model's own
input and output (--dataset auto), and each is calibrated and checked on its own real images.
int8 is calibrated on real client training images (--representative-samples, >= 100), with uint8
input/output by default (the image clients' convention; --io int8 or --io float32 as options), and
checked, like every variant, on real test images with tflite_runtime; a variant outside its
tolerance is flagged in the table and the exit code is 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from tff_prune.tf_logging import import_tensorflow

import_tensorflow()  # first, so TF 2.14's CUDA-registration noise never prints

from mobile.convert import IO_DTYPES, MIN_REPRESENTATIVE, ConversionError, parse_variants
from mobile.export import export_variants, size_table
from tff_prune.data.catalog import resolve_data_dir


def load_keras_model(path: str):
    """Loads a ``.keras``/``.h5`` model; raises ValueError with the path and cause if it is unreadable.

    The toolkit's own layers (:class:`tff_prune.models.group_norm.GroupNorm`) are registered first.
    """
    import tensorflow as tf

    import tff_prune.models.group_norm  # noqa: F401  registers tff_prune>GroupNorm for load_model

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
    p.add_argument("--dataset", default="auto", choices=("auto", "femnist", "celeba"),
                   help="data set of the model (labels, calibration and test images); auto: from the model's "
                        "input and output shapes")
    p.add_argument("--celeba-attribute", default="male", help="CelebA attribute the model predicts (labels)")
    p.add_argument("--data-dir", default=None, help="folder with the real data (femnist_leaf_300w.npz, "
                                                    "celeba_wild_crops84_276ids.npz)")
    p.add_argument("--representative-samples", type=int, default=200,
                   help=f"real training images for int8 calibration (>= {MIN_REPRESENTATIVE})")
    p.add_argument("--parity-samples", type=int, default=500,
                   help="real test images each variant is checked on against Keras (>= 1)")
    p.add_argument("--io", default="uint8", choices=IO_DTYPES,
                   help="int8 variant's input/output tensors: uint8 (default; MediaPipe / Task Library), int8, "
                        "float32")
    p.add_argument("--float-io", action="store_true", help="same as --io float32")
    p.add_argument("--femnist-crop", action="store_true", help="the model was trained with --femnist-crop")
    p.add_argument("--model-name", default=None, help="metadata name (default: tff_prune <dataset> classifier)")
    p.add_argument("--model-version", default=None, help="metadata version (default: 1)")
    p.add_argument("--author", default=None, help="metadata author (default: tff_prune)")
    p.add_argument("--license", default=None, help="metadata licence (default: the training data's terms)")
    args = p.parse_args(argv)
    try:
        variants = parse_variants(args.variants)
    except ConversionError as e:
        p.error(f"--variants: {e}")
    if args.parity_samples < 1:
        p.error(f"--parity-samples must be >= 1, got {args.parity_samples}")
    if "int8" in variants and args.representative_samples < MIN_REPRESENTATIVE:
        p.error(f"--representative-samples: int8 calibration needs >= {MIN_REPRESENTATIVE}, "
                f"got {args.representative_samples}")
    from mobile.model_card import infer_dataset
    from tff_prune.data import DataError

    try:
        model = load_keras_model(args.model)
        dataset = args.dataset
        if dataset == "auto":
            shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
            dataset = infer_dataset(tuple(d or 0 for d in shape[1:]), int(model.output_shape[-1]))
        stem = os.path.splitext(os.path.basename(args.model))[0]
        rows = export_variants(model, variants, dataset, resolve_data_dir(args.data_dir), args.output_dir,
                               lambda v: f"{stem}_{v}.tflite", args.representative_samples,
                               parity_samples=args.parity_samples, crop=args.femnist_crop, celeba_attribute=args.celeba_attribute,
                               io_dtype="float32" if args.float_io else args.io, model_name=args.model_name,
                               version=args.model_version, author=args.author, license_text=args.license)
    except (ValueError, DataError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(size_table(rows))
    print(f"written to {args.output_dir}: " + ", ".join(os.path.basename(r["path"]) for r in rows)
          + ", their .json sidecars and labels.txt")
    return 3 if any(r["flagged"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
