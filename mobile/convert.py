"""Keras -> TFLite conversion with ``tf.lite.TFLiteConverter``, and parity checks.

Variants (TFLite post-training quantization guide,
https://www.tensorflow.org/lite/performance/post_training_quantization):

- ``float32``: no optimisation.
- ``float16``: weights stored as float16 (``Optimize.DEFAULT`` + ``supported_types=[tf.float16]``).
- ``dynamic``: dynamic-range quantization, int8 weights, float activations (``Optimize.DEFAULT``).
- ``int8``: full-integer quantization; activations calibrated on a representative
  dataset (>= 100 real examples), ``TFLITE_BUILTINS_INT8`` ops only, int8 or float32
  input/output as chosen.
- ``sparse``: float32 with ``Optimize.EXPERIMENTAL_SPARSITY``: weight tensors that are sparse
  enough are stored in TFLite's sparse format (TFLite model optimization guide, "Pruning"; XNNPACK
  can run some sparse float kernels). For unstructured-pruned models; dense models convert as float32.

Every variant can be checked against the Keras model on real images with
``tflite_runtime``'s interpreter (:func:`parity`): top-1 agreement and max |Δ| of
the output probabilities, flagged against the tolerances in :data:`TOLERANCES`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tff_prune.report import atomic_write_bytes

VARIANTS = ("float32", "float16", "dynamic", "int8", "sparse")
MIN_REPRESENTATIVE = 100
# Per variant: (max |Δ probability| allowed, min top-1 agreement with Keras). Chosen from the
# precision of each format: float32 is exact up to kernel rounding; float16 weights keep ~3
# significant digits; int8 weights/activations can move probabilities by a few percent.
TOLERANCES = {"float32": (1e-4, 1.0), "sparse": (1e-4, 1.0), "float16": (1e-2, 0.98), "dynamic": (0.1, 0.95),
              "int8": (0.2, 0.9), "qat_int8": (0.2, 0.9)}


class ConversionError(ValueError):
    """Conversion cannot run as asked (unknown variant, missing or too little representative data)."""


def parse_variants(text: str) -> list[str]:
    """Parses ``"float32,int8"`` into a list; raises ConversionError naming unknown variants."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if not names or bad:
        raise ConversionError(f"unknown TFLite variant(s) {bad or [text]}; choose from {', '.join(VARIANTS)}")
    return names


def convert(keras_model: tf.keras.Model, variant: str = "float32",
            representative_data: Optional[np.ndarray] = None, int8_io: bool = True) -> bytes:
    """Converts ``keras_model`` to a TFLite flatbuffer.

    Args:
      keras_model: a built Keras model.
      variant: one of :data:`VARIANTS`.
      representative_data: for ``int8``: real inputs, float32 ``(N, *input_shape)``, N >= 100.
      int8_io: for ``int8``: int8 input and output tensors (True) or float32 ones (False).

    Returns:
      the ``.tflite`` model as bytes.

    Raises:
      ConversionError: unknown variant; ``int8`` without >= 100 representative examples.
    """
    if variant not in VARIANTS:
        raise ConversionError(f"unknown TFLite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if variant in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "sparse":
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative_data is None or len(representative_data) < MIN_REPRESENTATIVE:
            n = 0 if representative_data is None else len(representative_data)
            raise ConversionError(f"int8 conversion needs >= {MIN_REPRESENTATIVE} representative examples of real "
                                  f"client data to calibrate activations; got {n}")
        rep = np.asarray(representative_data, np.float32)

        def representative_dataset():
            for x in rep:
                yield [x[None, ...]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def convert_qat(qat_model: tf.keras.Model, int8_io: bool = True) -> bytes:
    """Converts a tfmot quantization-aware model to a full-integer int8 TFLite model (variant ``qat_int8``).

    The activation and weight ranges come from the QAT model's fake-quant variables, so no
    representative dataset is used (TFLite QAT guide:
    https://www.tensorflow.org/model_optimization/guide/quantization/training_example).
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def convert_to_file(keras_model: tf.keras.Model, path: str, variant: str = "float32",
                    representative_data: Optional[np.ndarray] = None, int8_io: bool = True) -> int:
    """Converts and writes the flatbuffer atomically to ``path``; returns its size in bytes."""
    data = convert(keras_model, variant, representative_data, int8_io)
    atomic_write_bytes(path, data)
    return len(data)


def run_tflite(model: bytes, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Runs a TFLite model on a batch with ``tflite_runtime``, quantizing int8 I/O as needed.

    Args:
      model: flatbuffer bytes. x: float32 ``(N, *input_shape)`` in the Keras input range.

    Returns:
      float32 outputs ``(N, *output_shape)``, dequantized if the output tensor is int8.
    """
    from tflite_runtime.interpreter import Interpreter

    interp = Interpreter(model_content=model, num_threads=num_threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], (len(x),) + tuple(inp["shape"][1:]))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], quantize_input(x, inp))
    interp.invoke()
    return dequantize_output(interp.get_tensor(out["index"]), out)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Real-valued ``x`` in the dtype of an interpreter input tensor (int8/uint8: ``round(x/scale) + zero``)."""
    feed = np.asarray(x, np.float32)
    if np.dtype(detail["dtype"]) == np.float32:
        return feed
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(feed / scale + zero), info.min, info.max).astype(detail["dtype"])


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """Real values of an interpreter output tensor (int8/uint8: ``scale * (q - zero)``)."""
    if np.dtype(detail["dtype"]) == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def parity(keras_model: tf.keras.Model, model: bytes, x: np.ndarray, variant: str) -> dict:
    """Compares a converted model with its Keras original on real inputs ``x``.

    Returns:
      dict with ``examples``, ``top1_agreement`` (fraction, 0-1), ``max_abs_diff``
      (max |Δ output| over all examples and classes), the variant's tolerances
      ``tolerance_max_abs_diff`` / ``tolerance_top1_agreement`` and ``flagged`` (True if
      either tolerance is broken).
    """
    want = keras_model(np.asarray(x, np.float32), training=False).numpy()
    got = run_tflite(model, x)
    max_diff, min_agree = TOLERANCES[variant]
    agreement = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    diff = float(np.abs(got - want).max())
    return {"examples": int(len(x)), "top1_agreement": agreement, "max_abs_diff": diff,
            "tolerance_max_abs_diff": max_diff, "tolerance_top1_agreement": min_agree,
            "flagged": bool(diff > max_diff or agreement < min_agree)}
