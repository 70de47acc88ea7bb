"""edgekd: distill a vision model from a big teacher into a small student, export it to ONNX and
TFLite (fp32 / full-integer int8) and benchmark it on the host, a Raspberry Pi or a microcontroller.

``import edgekd`` is lean: it imports neither torch nor TensorFlow nor ONNX Runtime. The public
functions below are loaded on first use, so a Raspberry Pi with only numpy and the TFLite runtime
can ``import edgekd`` and run the bench.

>>> import edgekd
>>> edgekd.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → module that defines it (imported on first access)
_LAZY = {
    "Config": "edgekd.config",
    "load_config": "edgekd.config",
    "EdgekdError": "edgekd.errors",
    "distill": "edgekd.train.run",
    "export": "edgekd.exporters.export",
    "verify_bundle": "edgekd.bundle",
    "sweep": "edgekd.train.sweep",
    "search": "edgekd.search.run",
    "load_dataset": "edgekd.data",
    "create_model": "edgekd.models",
    "list_models": "edgekd.models",
    "load_model": "edgekd.checkpoint",
    "bench": "edgekd.benchmark",
    "deploy": "edgekd.deploy",
    "Predictor": "edgekd.predict",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
