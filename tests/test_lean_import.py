"""``import edgekd`` and the CLI's start-up stay lean: the Raspberry Pi has only numpy + the TFLite runtime."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "torch",
    "torchvision",
    "tensorflow",
    "onnxruntime",
    "onnx",
    "onnx2tf",
    "sklearn",
    "matplotlib",
    "yaml",
    "optuna",
    "sqlalchemy",
]


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_edgekd_is_lean() -> None:
    loaded = imported_after("import edgekd; edgekd.__version__")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_startup_and_help_are_lean() -> None:
    loaded = imported_after("import edgekd.cli; edgekd.cli.build_parser()")
    assert not loaded & set(HEAVY) - {"yaml"}, loaded & set(HEAVY)
