"""Import TensorFlow (and onnx2tf) without breaking torch later in the same process.

TensorFlow's native libraries, loaded first, make a later import of triton (which torch loads
for ``torch.compile`` and even for ``use_deterministic_algorithms``) crash the process with a
segmentation fault. Loading triton first avoids it, so a script may export and then train again.
"""

from __future__ import annotations

import importlib.util
import os


def prepare_tensorflow_import() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401 - must be loaded before TensorFlow; see the module docstring


def import_onnx2tf():
    prepare_tensorflow_import()
    import onnx2tf

    return onnx2tf
