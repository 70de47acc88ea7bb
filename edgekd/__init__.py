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
import sys
import types
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
    "predict": "edgekd.predict",
    "Predictor": "edgekd.predict",
}

__all__ = ["__version__", *_LAZY]

# verbs named like a submodule of theirs: importing ``edgekd.deploy`` (``edgekd.predict``,
# ``edgekd.search.budget``) makes the import system bind the module to that name on the package,
# which __getattr__ below (asked only for a missing name) cannot undo: ``edgekd.deploy(...)`` was
# "'module' object is not callable" after such an import. A property of the package's class is
# asked first, whatever the import order; the modules stay in sys.modules (``from edgekd.deploy
# import …``, ``importlib.import_module("edgekd.deploy")``).
_SHADOWED = ("deploy", "predict", "search")
_ASSIGNED: dict[str, Any] = {}  # edgekd.deploy = … by hand (a test's monkeypatch): kept until deleted


def _verb(name: str) -> property:
    def get(package: types.ModuleType) -> Any:
        if name in _ASSIGNED:
            return _ASSIGNED[name]
        return getattr(importlib.import_module(_LAZY[name]), name)

    def set_(package: types.ModuleType, value: Any) -> None:
        if value is not sys.modules.get(f"edgekd.{name}"):  # the import system's binding is dropped
            _ASSIGNED[name] = value

    def delete(package: types.ModuleType) -> None:
        _ASSIGNED.pop(name, None)

    return property(get, set_, delete, doc=f"edgekd.{name}: the function of ``edgekd {name}``")


class _Package(types.ModuleType):
    """The ``edgekd`` module's class: the verbs of :data:`_SHADOWED` as properties."""


for _name in _SHADOWED:
    setattr(_Package, _name, _verb(_name))
sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
