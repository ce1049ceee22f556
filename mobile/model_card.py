"""What an Android app needs next to a ``.tflite`` file: ``labels.txt`` and a JSON sidecar.

The sidecar lists, for every input and output tensor: name, shape, dtype, the real
value range the app must feed / will receive, and the quantization parameters
(``real = scale * (q - zero_point)``, TFLite quantization spec,
https://www.tensorflow.org/lite/performance/quantization_spec).
"""

from __future__ import annotations

import numpy as np

from tff_prune.data.femnist import LABEL_CHARS

# FEMNIST label order (TFF emnist.load_data(only_digits=False)): digits, 'A'-'Z', 'a'-'z'.
LABELS = {"femnist": tuple(LABEL_CHARS)}
INPUT_RANGES = {"femnist": (0.0, 1.0), "celeba": (0.0, 1.0)}  # FEMNIST: 1.0 = background, 0.0 = ink
INPUT_NOTES = {"femnist": "28x28 grayscale, float = u8 / 255, 1.0 is background (white) and 0.0 is ink",
               "celeba": "84x84 RGB face crop, float = u8 / 255"}


def labels(dataset: str, celeba_attribute: str = "male") -> tuple[str, ...]:
    """Class labels of ``dataset`` in output order (CelebA: ``not_<attribute>``, ``<attribute>``).

    Raises:
      ValueError: unknown data set.
    """
    if dataset == "celeba":
        return (f"not_{celeba_attribute}", celeba_attribute)
    try:
        return LABELS[dataset]
    except KeyError:
        raise ValueError(f"no labels known for dataset {dataset!r}; known: {sorted(LABELS) + ['celeba']}") from None


def _tensor(detail: dict, real_range) -> dict:
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    entry = {"name": detail["name"], "shape": [int(d) for d in detail["shape"]], "dtype": dtype,
             "real_range": list(real_range) if real_range is not None else None}
    if dtype in ("int8", "uint8"):
        info = np.iinfo(detail["dtype"])
        entry["quantization"] = {"scale": float(scale), "zero_point": int(zero),
                                 "formula": "real = scale * (q - zero_point)"}
        entry["quantized_range"] = [int(info.min), int(info.max)]
    else:
        entry["quantization"] = None
    return entry


def sidecar(model: bytes, dataset: str, variant: str, celeba_attribute: str = "male") -> dict:
    """Describes a TFLite model's I/O for app developers.

    Args:
      model: the flatbuffer. dataset: ``femnist`` or ``celeba``. variant: the conversion variant name.
      celeba_attribute: the CelebA label attribute (names the two classes).

    Returns:
      JSON-serialisable dict: ``variant``, ``dataset``, ``inputs``, ``outputs``,
      ``num_classes``, ``input_note``, ``size_bytes``.
    """
    from tflite_runtime.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    return {
        "variant": variant, "dataset": dataset, "size_bytes": len(model),
        "inputs": [_tensor(d, INPUT_RANGES.get(dataset)) for d in ins],
        "outputs": [_tensor(d, (0.0, 1.0)) for d in outs],
        "num_classes": len(labels(dataset, celeba_attribute)),
        "input_note": INPUT_NOTES.get(dataset, ""),
        "output_note": "class probabilities (softmax) in labels.txt order",
    }
