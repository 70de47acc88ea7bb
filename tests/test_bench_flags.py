"""What bench tells beyond the figures: one report folder per device (the bundle still verifies),
an export parity failure carried into the rows, and int8 rows slower than fp32 flagged with the
ops the runtime leaves unaccelerated."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from conftest import reseal
from edgekd.benchmark import bench
from edgekd.benchmark.report import int8_slower_notes, status_text
from edgekd.bundle import MANIFEST, verify_bundle
from edgekd.runtimes.tflite_runner import undelegated_ops

FAST = {"runs": 2, "warmup": 0, "threads": 1, "models": "student", "formats": "tflite_int8,tflite_fp32"}


@pytest.fixture()
def copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out, ignore=shutil.ignore_patterns("bench"))
    return out


def test_one_report_folder_per_device_and_verify_still_ok(copy: Path) -> None:
    bench(artifacts=copy, device="cpu", **FAST)
    bench(artifacts=copy, device="rpi", force=True, **FAST)
    bench(artifacts=copy, device="mcu", models="student", formats="tflite_int8")
    pi_folder = "rpi-" + socket.gethostname()
    for folder, device in (("cpu", "cpu"), (pi_folder, "rpi"), ("mcu", "mcu")):
        report = json.loads((copy / "bench" / folder / "bench.json").read_text())
        assert report["settings"]["device"] == device
    assert not (copy / "bench" / "bench.json").exists()
    result = verify_bundle(copy)
    assert result.passed, result.bad


def test_a_report_folder_holding_the_users_hidden_files_is_written_and_they_stay(copy: Path) -> None:
    """Finder writes a .DS_Store into bench/cpu/ as soon as the folder is opened: bench refused the
    folder as one edgekd did not make. A rerun now writes its report beside the user's hidden
    entries and leaves them byte for byte; the bundle still verifies."""
    report_dir = copy / "bench" / "cpu"
    bench(artifacts=copy, device="cpu", **FAST)
    (report_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (report_dir / ".notes").mkdir()
    (report_dir / ".notes" / "x.txt").write_text("mine")
    before = (report_dir / "bench.json").read_bytes()
    bench(artifacts=copy, device="cpu", **FAST)
    assert (report_dir / "bench.json").read_bytes() != before  # the report was written again
    assert (report_dir / ".DS_Store").read_bytes() == b"\x00\x00\x00\x01Bud1"
    assert (report_dir / ".notes" / "x.txt").read_text() == "mine"
    result = verify_bundle(copy)
    assert result.passed, result.bad


def test_parity_failure_is_carried_into_bench_rows(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["metrics"]["student_int8.tflite"].update(ok=False, problems=["top-1 agreement 91.00% < 99.00%"])
    manifest["metrics"]["student_fp32.tflite"].update(ok=True, problems=[])
    (copy / MANIFEST).write_text(json.dumps(manifest))
    reseal(copy)
    report = bench(artifacts=copy, **FAST)
    rows = {r["format"]: r for r in report.results}
    int8, fp32 = rows["tflite_int8"], rows["tflite_fp32"]
    assert (
        int8["status"] == "ok"
        and int8["parity_ok"] is False
        and int8["parity_problems"] == ["top-1 agreement 91.00% < 99.00%"]
    )
    assert "PARITY FAILED" in status_text(int8) and "PARITY FAILED" not in status_text(fp32)
    assert any(
        n.startswith("PARITY FAILED: student_int8.tflite") and "top-1 agreement 91.00%" in n for n in report.notes
    )
    md = (copy / "bench" / "cpu" / "bench.md").read_text()
    assert "| student | tflite_int8 | ok PARITY FAILED" in md


def _row(fmt: str, p50: float, file: str) -> dict:
    return {"model": "student", "format": fmt, "threads": 1, "status": "ok", "p50_us": p50, "file": file}


def test_int8_slower_than_fp32_is_flagged(tiny_bundle: Path) -> None:
    rows = [_row("tflite_fp32", 220.0, "student_fp32.tflite"), _row("tflite_int8", 375.0, "student_int8.tflite")]
    notes = int8_slower_notes(rows, {"student_int8.tflite": tiny_bundle / "student_int8.tflite"})
    assert rows[1]["int8_slower"] is True and "int8_slower" not in rows[0]
    assert "INT8 SLOWER" in status_text(rows[1]) and "INT8 SLOWER" not in status_text(rows[0])
    assert len(notes) == 1 and notes[0].startswith(
        "INT8 SLOWER: student tflite_int8 p50 0.375 ms > tflite_fp32 0.22 ms at 1 thread(s)"
    )
    # the ops XNNPACK leaves to plain kernels in this int8 file are named (none: the note says so)
    ops = undelegated_ops(tiny_bundle / "student_int8.tflite")
    assert rows[1]["int8_unaccelerated_ops"] == ops
    assert (
        f"ops the runtime does not accelerate in int8: {', '.join(ops)}" if ops else "every op is delegated"
    ) in notes[0]
    faster = [_row("tflite_fp32", 300.0, "student_fp32.tflite"), _row("tflite_int8", 100.0, "student_int8.tflite")]
    assert int8_slower_notes(faster) == [] and "int8_slower" not in faster[1]


def test_export_table_mcu_column(tiny_bundle: Path, tmp_path: Path) -> None:
    """Every int8 file of a bundle carries TFLite Micro's verdict; an op TFLM lacks (RELU_0_TO_1,
    which a torchvision MobileNetV3 needs) is named with the flash the model needs."""
    from edgekd.exporters.export import mcu_cell
    from edgekd.mcu.support import check, missing_ops
    from edgekd.tflite_file import read_tflite, with_op_replaced

    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'edgekd[mcu]')")
    manifest = json.loads((tiny_bundle / MANIFEST).read_text())
    mcu = manifest["metrics"]["student_int8.tflite"]["mcu"]
    assert mcu["status"] == "ok" and mcu["ok"] is True and mcu["missing_ops"] == [] and mcu["flash_bytes"] > 20 * 1024
    assert mcu_cell(mcu).startswith("ok, flash ≈") and "mcu" not in manifest["metrics"]["student_fp32.tflite"]
    assert mcu_cell(None) == "—"
    src = tiny_bundle / "student_int8.tflite"
    patched = tmp_path / "lacking.tflite"
    first, second = [op for op in read_tflite(src).op_names if op not in ("CONV_2D", "FULLY_CONNECTED")][
        :2
    ]  # the pools
    data = with_op_replaced(src.read_bytes(), read_tflite(src), first, "RELU_0_TO_1")
    patched.write_bytes(with_op_replaced(data, read_tflite_bytes(data, tmp_path), second, "UNIQUE"))
    assert sorted(missing_ops(patched)) == ["RELU_0_TO_1", "UNIQUE"]  # both named, not only the first
    cell = mcu_cell(check({"file": str(patched)}))
    assert cell.startswith("no: TFLM lacks ") and "RELU_0_TO_1" in cell and "UNIQUE" in cell and "flash ≈" in cell
    assert missing_ops(src) == []


def read_tflite_bytes(data: bytes, folder: Path):
    from edgekd.tflite_file import read_tflite

    path = folder / "step.tflite"
    path.write_bytes(data)
    return read_tflite(path)
