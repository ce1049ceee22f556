"""Keras -> TFLite conversion with ``tf.lite.TFLiteConverter``, and parity checks.

Variants (TFLite post-training quantization guide,
https://www.tensorflow.org/lite/performance/post_training_quantization):

- ``float32``: no optimisation.
- ``float16``: weights stored as float16 (``Optimize.DEFAULT`` + ``supported_types=[tf.float16]``).
- ``dynamic``: dynamic-range quantization, int8 weights, float activations (``Optimize.DEFAULT``).
- ``int8``: full-integer quantization; activations calibrated on a representative
  dataset (>= 100 real examples), ``TFLITE_BUILTINS_INT8`` ops only. Input/output tensors
  (:data:`IO_DTYPES`): ``uint8`` by default, the image clients' convention (MediaPipe Tasks and the
  TFLite Task Library take UINT8 or FLOAT32 image models, not INT8): the input's quantization is
  then ``scale = 1/255, zero_point = 0``, so an app feeds the raw 0-255 pixel bytes; ``int8``
  (``scale = 1/255, zero_point = -128``) or ``float32`` (quantize/dequantize inside the model)
  as options.
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
IO_DTYPES = ("uint8", "int8", "float32")
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


def resolve_io_dtype(int8_io: bool = True, io_dtype: Optional[str] = None) -> str:
    """The integer variants' I/O dtype: ``io_dtype`` if given, else ``uint8`` (``int8_io``) or ``float32``.

    Raises:
      ConversionError: ``io_dtype`` not in :data:`IO_DTYPES`.
    """
    if io_dtype is None:
        return "uint8" if int8_io else "float32"
    if io_dtype not in IO_DTYPES:
        raise ConversionError(f"unknown integer I/O dtype {io_dtype!r}; choose one of {', '.join(IO_DTYPES)}")
    return io_dtype


def check_static_input(keras_model: tf.keras.Model) -> tuple[int, ...]:
    """The model's one input shape without the batch axis, e.g. ``(84, 84, 3)``.

    Raises:
      ConversionError: several inputs, or a dynamic (None) height, width or channel axis: a
        ``.tflite`` for an app, its metadata and its sidecar need one fixed image size.
    """
    shapes = keras_model.input_shape
    if isinstance(shapes, list):
        raise ConversionError(f"the model has {len(shapes)} inputs {shapes}; the TFLite export takes one image input")
    if len(shapes) < 2 or any(d is None for d in shapes[1:]):
        raise ConversionError(
            f"the model's input shape {tuple(shapes)} is dynamic (None besides the batch axis); an app's .tflite "
            f"needs a fixed (height, width, channels): rebuild it on tf.keras.Input(shape=(H, W, C)), e.g. with "
            f"tff_prune.models.get_model, and copy the weights in (model.set_weights)")
    return tuple(int(d) for d in shapes[1:])


def _set_integer_io(converter, io: str) -> None:
    if io != "float32":
        dtype = {"uint8": tf.uint8, "int8": tf.int8}[io]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype


def check_pixel_quantization(model: bytes) -> None:
    """An integer image input must map the pixel byte ``p`` to ``p / 255`` exactly (uint8: scale 1/255, zero 0).

    Raises:
      ConversionError: the calibrated input range was not [0, 1] (the calibration images do not
        reach both black and white), so raw pixels would be misread.
    """
    from tflite_runtime.interpreter import Interpreter

    inp = Interpreter(model_content=model).get_input_details()[0]
    dtype = np.dtype(inp["dtype"])
    if dtype == np.float32:
        return
    scale, zero = inp["quantization"]
    want_zero = 0 if dtype == np.uint8 else -128
    if abs(scale - 1 / 255) > 1e-7 or zero != want_zero:
        raise ConversionError(
            f"the {dtype.name} input got scale {scale:.8g}, zero point {zero} from calibration; an image client "
            f"feeds pixel bytes and needs scale 1/255 = {1 / 255:.8g}, zero point {want_zero}: calibrate on real "
            f"images whose pixels span 0..255 (more --representative-samples), or use --io float32")


def convert(keras_model: tf.keras.Model, variant: str = "float32",
            representative_data: Optional[np.ndarray] = None, int8_io: bool = True,
            io_dtype: Optional[str] = None) -> bytes:
    """Converts ``keras_model`` to a TFLite flatbuffer.

    Args:
      keras_model: a built Keras model with a static input shape.
      variant: one of :data:`VARIANTS`.
      representative_data: for ``int8``: real inputs, float32 ``(N, *input_shape)`` in [0, 1], N >= 100.
      int8_io: for ``int8``: integer input and output tensors (True, uint8 unless ``io_dtype``) or
        float32 ones (False).
      io_dtype: for ``int8``: ``uint8`` (default), ``int8`` or ``float32`` I/O; overrides ``int8_io``.

    Returns:
      the ``.tflite`` model as bytes.

    Raises:
      ConversionError: unknown variant or I/O dtype; dynamic input shape; ``int8`` without >= 100
        representative examples, or whose calibrated integer input does not read pixels exactly.
    """
    if variant not in VARIANTS:
        raise ConversionError(f"unknown TFLite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    io = resolve_io_dtype(int8_io, io_dtype)
    check_static_input(keras_model)
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
        rep = np.array(representative_data, np.float32)
        if io != "float32" and rep.min() >= 0.0 and rep.max() <= 1.0:
            # Pin the input's calibrated range to the image domain [0, 1] (one pixel of one real image set
            # to 0 and one to 1), so an integer input reads pixel bytes exactly (scale 1/255) even when
            # the sampled images happen to miss pure black or white; inner activations are unaffected.
            rep[0].flat[0], rep[0].flat[-1] = 0.0, 1.0

        def representative_dataset():
            for x in rep:
                yield [x[None, ...]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        _set_integer_io(converter, io)
    data = converter.convert()
    if variant == "int8":
        check_pixel_quantization(data)
    return data


def convert_qat(qat_model: tf.keras.Model, int8_io: bool = True, io_dtype: Optional[str] = None) -> bytes:
    """Converts a tfmot quantization-aware model to a full-integer int8 TFLite model (variant ``qat_int8``).

    The activation and weight ranges come from the QAT model's fake-quant variables, so no
    representative dataset is used (TFLite QAT guide:
    https://www.tensorflow.org/model_optimization/guide/quantization/training_example).
    I/O dtype as in :func:`convert` (``uint8`` by default; the input's range is then whatever
    the QAT model learned, recorded in the sidecar and metadata, not forced to 1/255).

    Raises:
      ConversionError: unknown ``io_dtype``; dynamic input shape.
    """
    io = resolve_io_dtype(int8_io, io_dtype)
    check_static_input(qat_model)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    _set_integer_io(converter, io)
    return converter.convert()


def convert_to_file(keras_model: tf.keras.Model, path: str, variant: str = "float32",
                    representative_data: Optional[np.ndarray] = None, int8_io: bool = True,
                    io_dtype: Optional[str] = None) -> int:
    """Converts and writes the flatbuffer atomically to ``path``; returns its size in bytes."""
    data = convert(keras_model, variant, representative_data, int8_io, io_dtype)
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
      (max |Δ output| over all examples and classes; NaN if an output is NaN), the variant's
      tolerances ``tolerance_max_abs_diff`` / ``tolerance_top1_agreement`` and ``flagged`` (True if
      either tolerance is broken or an output is not finite).
    """
    want = keras_model(np.asarray(x, np.float32), training=False).numpy()
    got = run_tflite(model, x)
    max_diff, min_agree = TOLERANCES[variant]
    agreement = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    diff = float(np.abs(got - want).max())
    return {"examples": int(len(x)), "top1_agreement": agreement, "max_abs_diff": diff,
            "tolerance_max_abs_diff": max_diff, "tolerance_top1_agreement": min_agree,
            "flagged": bool(not diff <= max_diff or agreement < min_agree)}  # NaN outputs are flagged
