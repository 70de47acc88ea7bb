"""Import TensorFlow (and onnx2tf) without breaking torch later in the same process.

TensorFlow's native libraries, loaded first, make a later import of triton (which torch loads
for ``torch.compile`` and even for ``use_deterministic_algorithms``) crash the process with a
segmentation fault. Loading triton first avoids it, so a script may export and then train again.

Importing onnx2tf sets Python's recursion limit to the C int maximum, for the whole process: a
JSON or YAML file nested deeply enough, read later by the same process (a library user's script,
the test suite), then overflows the C stack and kills it where it raised RecursionError. The limit
is put back after the import and raised only while onnx2tf converts (:func:`onnx2tf_recursion`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator

_onnx2tf_limit: int | None = None  # the recursion limit onnx2tf's import asked for


def prepare_tensorflow_import() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401 - must be loaded before TensorFlow; see the module docstring


def import_onnx2tf():
    global _onnx2tf_limit
    prepare_tensorflow_import()
    ours = sys.getrecursionlimit()
    try:
        import onnx2tf
    finally:  # also when the import fails after onnx2tf's module set the limit
        if _onnx2tf_limit is None:
            _onnx2tf_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(ours)
    return onnx2tf


@contextlib.contextmanager
def onnx2tf_recursion() -> Iterator[None]:
    """The recursion limit onnx2tf set for itself (it walks deep graphs recursively) while it
    converts; the process's own before and after."""
    import_onnx2tf()
    ours = sys.getrecursionlimit()
    sys.setrecursionlimit(max(ours, _onnx2tf_limit or ours))
    try:
        yield
    finally:
        sys.setrecursionlimit(ours)
