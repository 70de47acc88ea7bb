"""The ``litert_torch`` TFLite backend for real: PyTorch → TFLite without TensorFlow or ONNX.

Skipped unless litert-torch and ai-edge-quantizer are importable; the project env does not have
them (they pull in jax and transformers). To run it, use an env with the ``litert`` extra, e.g.::

    PYTHONPATH=. /tmp/ltvenv/bin/python -m pytest -q tests/test_export_litert.py

(/tmp/ltvenv: torch 2.14.1, litert-torch 0.10.0, ai-edge-quantizer 0.10.0, ai-edge-litert 2.3.0,
plus scikit-learn, pyyaml, rich, pytest and tflite-micro for the run and the TFLM check.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="litert-torch not installed: pip install 'edgekd[litert]'")
pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer not installed: pip install 'edgekd[litert]'")

from conftest import assert_tflm_matches_litert  # noqa: E402
from edgekd.bundle import MANIFEST  # noqa: E402
from edgekd.exporters.export import export  # noqa: E402

FORMATS = "[pytorch,tflite_fp32,tflite_int8,tflite_fp16,tflite_dynamic]"


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("litert") / "tiny"
    # the same bound as the onnx2tf bundle in test_export.py: the 4-channel test student is too
    # small for the 99 % int8 agreement a real student meets
    lite = ["export.backend=litert_torch", f"export.formats={FORMATS}", "export.teacher_formats=[pytorch,tflite_fp32]"]
    export(run=run_dir, out=out, set=[*lite, "export.min_top1_agreement=0.95"])
    return out


def test_every_format_is_written_without_onnx(bundle: Path) -> None:
    m = json.loads((bundle / MANIFEST).read_text())
    names = set(m["files"])
    assert {
        "student_fp32.tflite",
        "student_int8.tflite",
        "student_fp16.tflite",
        "student_dynamic.tflite",
        "teacher_fp32.tflite",
    } <= names
    assert not any(n.endswith(".onnx") for n in names)  # straight from PyTorch: no ONNX graph was needed
    assert "litert-torch" in m["versions"] and "ai-edge-quantizer" in m["versions"]
    for name, entry in m["models"].items():
        if name.endswith(".tflite"):
            assert entry["input"]["layout"] == "NHWC" and entry["input"]["shape"] == [1, 8, 8, 1], name


def test_parity_in_bounds(bundle: Path) -> None:
    m = json.loads((bundle / MANIFEST).read_text())
    assert m["parity_ok"] is True
    for name in ("student_fp32.tflite", "teacher_fp32.tflite"):
        assert m["metrics"][name]["max_abs_diff"] < 1e-3 and m["metrics"][name]["top1_agreement"] == 1.0, name
    int8 = m["metrics"]["student_int8.tflite"]
    assert int8["top1_agreement"] >= 0.95 and int8["reference_acc"] - int8["test_acc"] <= 0.005 and int8["n"] == 359


def test_int8_is_full_integer(bundle: Path) -> None:
    from edgekd.runtimes.tflite_runner import full_integer_problems

    m = json.loads((bundle / MANIFEST).read_text())
    entry = m["models"]["student_int8.tflite"]
    assert entry["input"]["dtype"] == "int8" and entry["output"]["dtype"] == "int8"
    # the input range is pinned to the pixel range, so raw pixels quantize exactly: q = pixel − 128
    assert entry["input"]["scale"] == pytest.approx(1.0, abs=1e-6) and entry["input"]["zero_point"] == -128
    assert full_integer_problems(bundle / "student_int8.tflite") == []
    # the dynamic-range file keeps float I/O and activations: not an MCU model
    assert full_integer_problems(bundle / "student_dynamic.tflite") != []


def test_int8_runs_under_tflite_micro(bundle: Path) -> None:
    pytest.importorskip(
        "tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed: pip install 'edgekd[mcu]'"
    )
    # the kernels round differently (TFLM reference vs XNNPACK): up to 3 output steps, as in test_export
    assert_tflm_matches_litert(bundle / "student_int8.tflite", np.load(bundle / "eval.npz")["images"][:20], steps=3)
    assert (bundle / "student_int8_model_data.cc").is_file()


def test_wrong_calibration_is_refused(tmp_path: Path) -> None:
    import torch

    from edgekd.exporters.errors import ExportError
    from edgekd.exporters.to_tflite_litert import torch_to_tflite

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()).eval()
    wrong = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ExportError, match=r"calibration images are \(32, 32, 3\) \(HWC\) but tiny takes \(8, 8, 1\)"):
        torch_to_tflite(model, (1, 1, 8, 8), {"tflite_int8": tmp_path / "x.tflite"}, wrong, name="tiny")
    with pytest.raises(ExportError, match="calibration data must be uint8"):
        torch_to_tflite(
            model, (1, 1, 8, 8), {"tflite_int8": tmp_path / "x.tflite"}, wrong.astype(np.float32), name="tiny"
        )
