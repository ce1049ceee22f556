"""What an Android app needs next to a ``.tflite`` file: ``labels.txt`` and a JSON sidecar.

The sidecar lists, for every input and output tensor: name, shape, dtype, the real
value range the app must feed / will receive, and the quantization parameters
(``real = scale * (q - zero_point)``, TFLite quantization spec,
https://www.tensorflow.org/lite/performance/quantization_spec).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tff_prune.data.femnist import LABEL_CHARS

# FEMNIST label order (TFF emnist.load_data(only_digits=False)): digits, 'A'-'Z', 'a'-'z'.
LABELS = {"femnist": tuple(LABEL_CHARS)}
INPUT_RANGES = {"femnist": (0.0, 1.0), "celeba": (0.0, 1.0)}  # FEMNIST: 1.0 = background, 0.0 = ink
INPUT_NOTES = {"femnist": "28x28 grayscale, float = u8 / 255, 1.0 is background (white) and 0.0 is ink",
               "celeba": "84x84 RGB face crop, float = u8 / 255"}
# The training data's terms, the default licence field of the TFLite Metadata.
DATA_TERMS = {
    "femnist": "Trained on FEMNIST (NIST Special Database 19 / EMNIST, public US-government data; LEAF "
               "preprocessing, BSD-2-Clause). Cite Cohen et al. 2017 and Caldas et al. 2018.",
    "celeba": "Trained on CelebA: for non-commercial research purposes only (Liu, Luo, Wang, Tang, "
              "'Deep Learning Face Attributes in the Wild', ICCV 2015); any use must keep that restriction.",
}


def infer_dataset(input_shape, num_classes: int) -> str:
    """The toolkit's data set a classifier was trained on, from its input ``(H, W, C)`` and class count.

    FEMNIST models take ``(28, 28, 1)`` and give 62 classes; CelebA models ``(84, 84, 3)`` and 2.

    Raises:
      ValueError: neither; names the shapes and the fix (``--dataset``).
    """
    shape = tuple(int(d) for d in input_shape)
    if shape[-1:] == (1,) and num_classes == 62:
        return "femnist"
    if shape[-1:] == (3,) and num_classes == 2:
        return "celeba"
    raise ValueError(f"cannot tell the data set of a model with input {shape} and {num_classes} classes "
                     f"(FEMNIST: (28, 28, 1) -> 62, CelebA: (84, 84, 3) -> 2); pass --dataset femnist|celeba")


def check_model_matches(dataset: str, input_shape, num_classes: int, celeba_attribute: str = "male") -> None:
    """Refuses a model whose channels or class count do not fit ``dataset`` (wrong --dataset).

    Raises:
      ValueError: e.g. an RGB model converted with ``--dataset femnist``.
    """
    want_c, want_k = {"femnist": (1, 62), "celeba": (3, 2)}[dataset]
    shape = tuple(int(d) for d in input_shape)
    if shape[-1] != want_c or num_classes != want_k:
        raise ValueError(f"the model takes {shape} and gives {num_classes} classes, but --dataset {dataset} "
                         f"means {want_c} channel(s) and {want_k} classes; pass the data set it was trained on "
                         f"(or --dataset auto)")


def input_note(dataset: str, shape) -> str:
    """How an app prepares the input, from the model's own ``(1, H, W, C)``."""
    h, w, c = (int(d) for d in shape[-3:])
    kind = "RGB" if c == 3 else "grayscale" if c == 1 else f"{c}-channel"
    what = {"celeba": " face crop", "femnist": " character"}.get(dataset, "")
    extra = ", 1.0 is background (white) and 0.0 is ink" if dataset == "femnist" else ""
    return f"{h}x{w} {kind}{what}, float = u8 / 255{extra}"


def finite_json(obj, path: str = ""):
    """``obj`` with every NaN / infinity replaced by None (JSON has no such token).

    Returns:
      (clean object, list of the dotted paths that held a non-finite number).
    """
    bad: list[str] = []

    def walk(o, where):
        if isinstance(o, float) and not math.isfinite(o):
            bad.append(where or "(root)")
            return None
        if isinstance(o, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(o)]
        return o

    return walk(obj, path), bad


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


def sidecar(model: bytes, dataset: str, variant: str, celeba_attribute: str = "male",
            general: Optional[dict] = None) -> dict:
    """Describes a TFLite model's I/O for app developers (the same facts go into its TFLite Metadata).

    Args:
      model: the flatbuffer. dataset: ``femnist`` or ``celeba``. variant: the conversion variant name.
      celeba_attribute: the CelebA label attribute (names the two classes).
      general: name, description, version, author, license (:func:`mobile.metadata.general_info`),
        stored under ``model_info``.

    Returns:
      JSON-serialisable dict: ``variant``, ``dataset``, ``inputs``, ``outputs`` (each: ``name``,
      ``shape``, ``dtype``, ``real_range``, ``quantization`` {``scale``, ``zero_point``} or None,
      ``quantized_range``), ``num_classes``, ``input_note``, ``output_note``, ``size_bytes``
      (of ``model``) and ``model_info``.
    """
    from tflite_runtime.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    return {
        "variant": variant, "dataset": dataset, "size_bytes": len(model),
        "inputs": [_tensor(d, INPUT_RANGES.get(dataset)) for d in ins],
        "outputs": [_tensor(d, (0.0, 1.0)) for d in outs],
        "num_classes": len(labels(dataset, celeba_attribute)),
        "input_note": input_note(dataset, ins[0]["shape"]) if ins else "",
        "output_note": "class probabilities (softmax) in labels.txt order",
        "model_info": dict(general or {}),
    }
