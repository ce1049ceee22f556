"""TFLite Metadata in the ``.tflite`` itself: what MediaPipe Tasks, the TFLite Task Library and
Android Studio's ML Model Binding read (the JSON sidecar and a loose ``labels.txt`` are read by none).

Written with MediaPipe's metadata writers (``mediapipe.tasks.python.metadata``; same schema as
tflite-support's, https://www.tensorflow.org/lite/models/convert/metadata), from the facts of
:func:`mobile.model_card.sidecar`, so sidecar and metadata cannot disagree:

- model: name, description, version, author, licence;
- input: an image (RGB or grayscale), ``NormalizationOptions`` mean 0 / std 255 (float = pixel / 255),
  its value range (stats: [0, 1] for float input, [0, 255] for uint8 pixels), and for an integer
  input its quantization (``real = scale * (q - zero_point)``) in the description;
- output: class probabilities with the labels as an associated ``labels.txt``
  (``TENSOR_AXIS_LABELS``), and the output quantization in the description;
- custom metadata ``tff_prune_io``: the sidecar's input/output entries as JSON.

MediaPipe's ImageClassifier and the Task Library's take RGB models only ("Only RGB color space is
supported for now"; 1-channel input is refused): FEMNIST models carry GRAYSCALE metadata for the
apps that read it themselves (the plain TFLite Interpreter, ML Model Binding).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Mapping, Optional, Sequence

CUSTOM_IO_NAME = "tff_prune_io"


class MetadataError(ValueError):
    """The model cannot carry image-classifier metadata (shape, dtype) or has none; the message says why."""


def _libs():
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, writer_utils

    return flatbuffers, fb, metadata, metadata_info, writer_utils


def _quant_text(entry: Mapping) -> str:
    q = entry.get("quantization")
    if not q:
        return f"{entry['dtype']}"
    return (f"{entry['dtype']}, quantization: real = {q['scale']:.10g} * (q - {q['zero_point']}), "
            f"q in [{entry['quantized_range'][0]}, {entry['quantized_range'][1]}]")


def add_metadata(model: bytes, card: Mapping, labels: Sequence[str], name: str, description: str,
                 version: str, author: str, license_text: str) -> bytes:
    """Returns ``model`` with TFLite Metadata for an image classifier (see the module docstring).

    Args:
      model: ``.tflite`` flatbuffer with one image input ``(1, H, W, C)``, C = 1 or 3, float32,
        uint8 or int8, and one probability output ``(1, classes)``.
      card: :func:`mobile.model_card.sidecar` of ``model`` (the facts written here).
      labels: class names in output order (``len == classes``), stored as ``labels.txt``.
      name, description, version, author, license_text: the model's general metadata.

    Returns:
      the flatbuffer with metadata (a few hundred bytes larger; tensors and weights unchanged).

    Raises:
      MetadataError: not one 4-D image input with 1 or 3 channels, or labels that do not match the
        output width.
    """
    flatbuffers, fb, metadata, metadata_info, writer_utils = _libs()
    ins, outs = card["inputs"], card["outputs"]
    if len(ins) != 1 or len(ins[0]["shape"]) != 4 or ins[0]["shape"][-1] not in (1, 3):
        raise MetadataError(f"image metadata needs one input (1, H, W, 1 or 3); the model has "
                            f"{[i['shape'] for i in ins]}")
    if len(outs) != 1 or outs[0]["shape"][-1] != len(labels):
        raise MetadataError(f"{len(labels)} labels for outputs {[o['shape'] for o in outs]}; they must match")
    inp, out = ins[0], outs[0]
    channels = inp["shape"][-1]
    color = fb.ColorSpaceType.RGB if channels == 3 else fb.ColorSpaceType.GRAYSCALE
    in_types = writer_utils.get_input_tensor_types(model)
    out_types = writer_utils.get_output_tensor_types(model)
    image = metadata_info.InputImageTensorMd(
        name="image", description=(f"{card.get('input_note', '')}; tensor {_quant_text(inp)}; "
                                   f"normalization: float = (pixel - 0) / 255"),
        norm_mean=[0.0], norm_std=[255.0], color_space_type=color, tensor_type=in_types[0])
    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, "labels.txt")
        with open(labels_path, "w") as f:
            f.write("\n".join(labels) + "\n")
        probs = metadata_info.ClassificationTensorMd(
            name="probability", description=f"{card.get('output_note', '')}; tensor {_quant_text(out)}",
            label_files=[metadata_info.LabelFileMd(labels_path)], tensor_type=out_types[0])
        model_md = metadata_info.GeneralMd(name=name, version=version, description=description, author=author,
                                           licenses=license_text).create_metadata()
        subgraph = fb.SubGraphMetadataT()
        image_md = image.create_metadata()
        if inp["dtype"] == "int8":  # MediaPipe's writer leaves int8 stats empty (no image client takes int8)
            image_md.stats = fb.StatsT()
            image_md.stats.min, image_md.stats.max = [-128.0], [127.0]
        subgraph.inputTensorMetadata = [image_md]
        subgraph.outputTensorMetadata = [probs.create_metadata()]
        io_json = json.dumps({"inputs": ins, "outputs": outs}, allow_nan=False, sort_keys=True).encode()
        custom = fb.CustomMetadataT()
        custom.name, custom.data = CUSTOM_IO_NAME, list(io_json)
        subgraph.customMetadata = [custom]
        model_md.subgraphMetadata = [subgraph]
        builder = flatbuffers.Builder(0)
        builder.Finish(model_md.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
        populator = metadata.MetadataPopulator.with_model_buffer(bytearray(model))
        populator.load_metadata_buffer(builder.Output())
        populator.load_associated_files([labels_path])
        populator.populate()
        return bytes(populator.get_model_buffer())


def read_metadata(model: bytes) -> dict:
    """The model's TFLite Metadata as MediaPipe's ``MetadataDisplayer`` reads it.

    Returns:
      dict: ``metadata`` (the metadata JSON, parsed), ``associated_files`` (names), ``labels``
      (the packed ``labels.txt``, one str per class) and ``io`` (the ``tff_prune_io`` custom
      metadata, or None).

    Raises:
      MetadataError: the model has no metadata.
    """
    _, _, metadata, _, _ = _libs()
    try:
        shown = metadata.MetadataDisplayer.with_model_buffer(bytearray(model))
    except ValueError as e:
        raise MetadataError(f"no TFLite Metadata in this model ({e}); export it with mobile.export") from e
    files = shown.get_packed_associated_file_list()
    labels = (shown.get_associated_file_buffer("labels.txt").decode().splitlines()
              if "labels.txt" in files else None)
    md = json.loads(shown.get_metadata_json())
    io = None
    for custom in md.get("subgraph_metadata", [{}])[0].get("custom_metadata", []):
        if custom.get("name") == CUSTOM_IO_NAME:
            io = json.loads(bytes(custom["data"]).decode())
    return {"metadata": md, "associated_files": files, "labels": labels, "io": io}


def general_info(dataset: str, variant: str, celeba_attribute: str = "male", model_name: Optional[str] = None,
                 version: Optional[str] = None, author: Optional[str] = None,
                 license_text: Optional[str] = None) -> dict:
    """Default name, description, version, author and licence for a model of ``dataset`` / ``variant``.

    The licence defaults to the training data's terms (CelebA: non-commercial research only).
    """
    from mobile import model_card

    task = {"femnist": "handwritten character (62 classes: 0-9, A-Z, a-z) from a 28x28 grayscale image",
            "celeba": f"CelebA attribute '{celeba_attribute}' (2 classes) from an 84x84 RGB face crop"}
    return {
        "name": model_name or f"tff_prune {dataset} classifier ({variant})",
        "description": (f"Classifies the {task.get(dataset, dataset)}. Trained with federated learning "
                        f"(TensorFlow Federated) with server-side filter pruning (tff_prune); TFLite variant "
                        f"{variant}. Input: {model_card.INPUT_NOTES.get(dataset, '')}."),
        "version": version or "1",
        "author": author or "tff_prune",
        "license": license_text or model_card.DATA_TERMS.get(dataset, "see the training data's licence"),
    }
