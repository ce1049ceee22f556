"""Importing TensorFlow without the CUDA plugin-registration errors TF 2.14 prints on every CPU-only start.

``import tensorflow`` (2.14, pip wheel) writes ``E ... Unable to register cuDNN/cuFFT/cuBLAS factory: Attempting
to register factory for plugin ... when one has already been registered`` from C++ on machines without a GPU
(tensorflow/tensorflow#62075). They are ERROR-level, so ``TF_CPP_MIN_LOG_LEVEL=2`` does not hide them, and 3 would
hide real errors too. :func:`import_tensorflow` captures file descriptor 2 during the import only and writes
back every other line.
"""

from __future__ import annotations

import os
import sys
import tempfile

KNOWN_NOISE = ("Unable to register cuDNN factory", "Unable to register cuFFT factory",
               "Unable to register cuBLAS factory")


def import_tensorflow():
    """Imports and returns ``tensorflow``; its known CUDA-registration lines (:data:`KNOWN_NOISE`) are dropped.

    Also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (TF's C++ INFO and WARNING lines) unless already set. A no-op filter if
    TensorFlow is already imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in KNOWN_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return tensorflow
