"""The Raspberry Pi bench path on this host: refusal without --force, --force at 1 and 4 threads,
board/thermal/throttle readings (fake sysfs and vcgencmd), the op-version error of an older
runtime, and emulated runs that never report a latency."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import reseal
from edgekd.benchmark import BenchError, bench, pi
from edgekd.cli import main
from edgekd.tflite_file import read_tflite, with_op_version

FAST = {"runs": 3, "warmup": 1}


def test_not_a_pi_says_so(tiny_bundle: Path, capsys: pytest.CaptureFixture) -> None:
    if pi.is_raspberry_pi():
        pytest.skip("this is a Raspberry Pi")
    with pytest.raises(
        BenchError, match=r"this machine is not a Raspberry Pi .*; use --device cpu to bench it, or --force"
    ):
        bench(artifacts=tiny_bundle, device="rpi")
    capsys.readouterr()
    assert main(["bench", "--device", "rpi", "--artifacts", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd: error: this machine is not a Raspberry Pi") and len(err.splitlines()) == 1


def test_forced_pi_path(tiny_bundle: Path, tmp_path: Path) -> None:
    report = bench(
        artifacts=tiny_bundle,
        device="rpi",
        force=True,
        models="student",
        formats="onnx,tflite_int8,tflite_fp32",
        out=tmp_path / "o",
        **FAST,
    )
    rows = {(r["format"], r["threads"]): r for r in report.results}
    assert set(rows) == {("onnx", 1), ("tflite_int8", 1), ("tflite_int8", 4), ("tflite_fp32", 1), ("tflite_fp32", 4)}
    # asked for by name, a format the Pi does not run is a failed row (exit 1), not a silent skip
    assert (
        rows["onnx", 1]["status"] == "failed"
        and rows["onnx", 1]["stage"] == "unsupported"
        and "TFLite models only" in rows["onnx", 1]["reason"]
    )
    assert not report.passed and report.failures == [
        f"student/onnx 1t failed (unsupported): {rows['onnx', 1]['reason']}"
    ]
    for (fmt, n), r in rows.items():
        if fmt != "onnx":
            assert (
                r["status"] == "ok"
                and r["threads"] == n
                and r["p50_us"] > 0
                and r["runtime"].startswith("ai-edge-litert")
            )
    host = report.host
    assert host["delegate"] == "XNNPACK" and host["forced"] is True and set(host["conditions"]) == {"before", "after"}
    assert any(note.startswith("--force: the Pi path ran on") for note in report.notes)
    md = (tmp_path / "o" / "bench.md").read_text()
    assert "| threads |" in md and "SoC °C" in md and "1 and 4 threads" in md


def _fake_board(root: Path, temp_milli: int, cur_khz: int, max_khz: int, hw_khz: int) -> None:
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir(parents=True)
    for name, value in (
        ("scaling_cur_freq", cur_khz),
        ("scaling_max_freq", max_khz),
        ("cpuinfo_max_freq", hw_khz),
        ("scaling_governor", "ondemand"),
    ):
        (cpufreq / name).write_text(f"{value}\n")
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text(f"{temp_milli}\n")


def test_board_readings_from_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no vcgencmd
    _fake_board(tmp_path, 82_500, 1_000_000, 1_200_000, 1_800_000)
    assert pi.is_raspberry_pi(tmp_path) and pi.board_model(tmp_path) == "Raspberry Pi 4 Model B Rev 1.4"
    state = pi.snapshot(tmp_path)
    assert (
        state["source"] == "sysfs"
        and state["temp_c"] == 82.5
        and state["freq_mhz"] == 1000
        and state["governor"] == "ondemand"
    )
    warnings = pi.throttle_warnings(state, state)
    assert any("82.5 °C" in w for w in warnings) and any("capped at 1200 MHz of 1800 MHz" in w for w in warnings)
    cool = tmp_path / "cool"
    _fake_board(cool, 45_000, 1_800_000, 1_800_000, 1_800_000)
    assert pi.throttle_warnings(pi.snapshot(cool), pi.snapshot(cool)) == []


def test_throttling_from_vcgencmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """get_throttled 0x50000 before (latched since boot) and 0x50005 after: throttled now, and
    under-voltage during the run; a word unchanged at 0x50000 is old history, not this run."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    word = tmp_path / "word"
    (bindir / "vcgencmd").write_text(
        '#!/bin/sh\ncase "$1" in\n  measure_temp) echo "temp=61.2\'C";;\n'
        f'  get_throttled) echo "throttled=$(cat {word})";;\n  measure_clock) echo '
        "'frequency(48)=1500398464';;\nesac\n"
    )
    (bindir / "vcgencmd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    word.write_text("0x50000")
    before = pi.snapshot(tmp_path)
    assert (
        before["source"] == "vcgencmd"
        and before["temp_c"] == 61.2
        and before["freq_mhz"] == pytest.approx(1500.4, abs=0.1)
    )
    assert before["throttled_flags"] == ["under-voltage occurred", "throttling occurred"]
    assert pi.throttle_warnings(before, before) == []
    word.write_text("0x50005")
    warnings = pi.throttle_warnings(before, pi.snapshot(tmp_path))
    assert len(warnings) == 1 and warnings[0].startswith("THROTTLED during the bench (under-voltage, throttled")


def test_older_runtime_missing_op_version(tiny_bundle: Path, tmp_path: Path) -> None:
    """A model from a newer converter: FULLY_CONNECTED at a version this runtime lacks. The Pi bench
    fails that row with one line naming the op, its version, the runtime and what to upgrade."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("bench"))
    path = copy / "student_int8.tflite"
    path.write_bytes(with_op_version(path.read_bytes(), read_tflite(path), "FULLY_CONNECTED", 99))
    reseal(copy)
    report = bench(
        artifacts=copy, device="rpi", force=True, threads=1, formats="tflite_int8", out=tmp_path / "o", **FAST
    )
    row = report.results[0]
    assert row["status"] == "failed" and row["stage"] == "load"
    assert "needs TFLite op FULLY_CONNECTED version 99, which ai-edge-litert" in row["reason"]
    assert "upgrade the runtime on this device (pip install -U ai-edge-litert)" in row["reason"]


def test_emulated_runs_are_not_latencies(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_EMULATION", "qemu-user aarch64 (test)")
    report = bench(
        artifacts=tiny_bundle, device="rpi", force=True, threads=1, formats="tflite_int8", out=tmp_path / "o", **FAST
    )
    row = report.results[0]
    assert (
        row["status"] == "ok"
        and row["p50_us"] is None
        and row["throughput_per_s"] is None
        and row["emulated"]["p50_us"] > 0
    )
    assert report.host["emulated"] == "qemu-user aarch64 (test)" and "EMULATED" in report.notes[0]
    assert report.comparisons == []  # no ratio is made of emulator times
