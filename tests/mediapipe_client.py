"""A real app client in its own process: MediaPipe Tasks' ImageClassifier (the C++ core of the Android
library) loads each .tflite from its TFLite Metadata alone and classifies real photos.

Usage: python tests/mediapipe_client.py OUT.json MODEL.tflite=IMAGES.npy [MODEL.tflite=IMAGES.npy ...]
IMAGES.npy: uint8 (N, H, W, C) pixels as an app gets them from a camera or a file.
OUT.json: {model path: {"index": [...], "label": [...], "score": [...]} or {"error": "..."}}.
Imports no project code: the model file must carry everything the client needs.
"""

import json
import sys

import numpy as np


def main(argv):
    import mediapipe as mp
    from mediapipe.tasks import python as tasks
    from mediapipe.tasks.python import vision

    out = {}
    for pair in argv[1:]:
        path, images_path = pair.rsplit("=", 1)
        images = np.load(images_path)
        try:
            options = vision.ImageClassifierOptions(base_options=tasks.BaseOptions(model_asset_path=path),
                                                    max_results=1)
            classifier = vision.ImageClassifier.create_from_options(options)
        except Exception as e:  # the client's own refusal, reported to the test
            out[path] = {"error": f"{type(e).__name__}: {e}"}
            continue
        got = {"index": [], "label": [], "score": []}
        with classifier:
            for img in images:
                fmt = mp.ImageFormat.SRGB if img.shape[-1] == 3 else mp.ImageFormat.GRAY8
                top = classifier.classify(mp.Image(image_format=fmt, data=np.ascontiguousarray(img)))
                best = top.classifications[0].categories[0]
                got["index"].append(int(best.index))
                got["label"].append(best.category_name)
                got["score"].append(float(best.score))
        out[path] = got
    with open(argv[0], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
