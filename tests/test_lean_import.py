"""``import edgekd`` and the CLI's start-up stay lean: the Raspberry Pi has only numpy + the TFLite runtime."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(
    "verb, module", [("deploy", "edgekd.deploy"), ("predict", "edgekd.predict"), ("search", "edgekd.search.budget")]
)
def test_verbs_named_like_a_module_stay_functions(verb: str, module: str) -> None:
    """``edgekd.deploy`` is the function whichever is imported first: importing the submodule bound
    the module to that name ("'module' object is not callable"). The module stays importable."""
    check = (
        "import inspect, sys\n"
        f"assert inspect.isfunction(edgekd.{verb}) and edgekd.{verb}.__name__ == {verb!r}, edgekd.{verb}\n"
        f"assert sys.modules[{module!r}].__name__ == {module!r}\n"
    )
    for first in (f"import {module}, edgekd", f"import edgekd\nedgekd.{verb}\nimport {module}"):
        proc = subprocess.run([sys.executable, "-c", first + "\n" + check], capture_output=True, text=True)
        assert proc.returncode == 0, (first, proc.stderr)


def test_deploy_after_import_edgekd_deploy_is_one_error_line() -> None:
    code = "import edgekd.deploy, edgekd\nedgekd.deploy(host='x', artifacts='nope')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "edgekd.bundle.BundleError: bundle not found: nope" in proc.stderr, proc.stderr


def test_a_verb_can_be_replaced_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd
    from edgekd.deploy import deploy

    monkeypatch.setattr(edgekd, "deploy", print)
    assert edgekd.deploy is print
    monkeypatch.undo()
    assert edgekd.deploy is deploy
