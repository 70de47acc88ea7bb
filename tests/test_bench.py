"""The bench stage on one tiny bundle: rows, JSON schema, report files, per-row failures and skips,
the accuracy gate, and the Raspberry Pi path (TFLite only, no torch / TensorFlow / ONNX Runtime)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, eval_data, file_tree, reseal, with_eval_arrays
from edgekd.benchmark import BenchError, bench, latest_bundle
from edgekd.benchmark.report import pareto_front
from edgekd.benchmark.row import check_schema
from edgekd.benchmark.stats import is_noisy, latency_stats
from edgekd.bundle import MANIFEST, BundleError, verify_bundle
from edgekd.cli import main
from edgekd.registry import UnknownNameError

ROWS = {
    ("student", "pytorch"),
    ("student", "onnx"),
    ("student", "tflite_fp32"),
    ("student", "tflite_int8"),
    ("teacher", "pytorch"),
    ("teacher", "onnx"),
    ("teacher", "tflite_fp32"),
}
ROW_KEYS = {
    "model",
    "format",
    "status",
    "p50_us",
    "accuracy_frac",
    "size_bytes",
    "peak_rss_bytes",
    "macs",
    "gmacs_per_s",
    "threads",
}
LATENCY_KEYS = {"min_us", "p50_us", "p90_us", "p99_us", "mean_us", "std_us"}
FAST = {"runs": 5, "warmup": 1, "threads": 1}  # functionality, not timing: the suite shares 2 cores


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the shared bundle: the report fixture writes into BUNDLE/bench (the
    default) and the tests read that folder, which no other module's bench may then have written."""
    copy = tmp_path_factory.mktemp("bench-bundle") / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.fixture(scope="module")
def bench_json(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-json") / "results.json"


@pytest.fixture(scope="module")
def report(bundle: Path, bench_json: Path):
    """Every model of the bundle, default report folder (BUNDLE/bench/cpu)."""
    return bench(artifacts=bundle, json=bench_json, **FAST)


def _rows(report) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["format"]): r for r in report.results}


_reseal = reseal


def _blocking_sitecustomize(folder: Path, modules: list[str]) -> str:
    """A PYTHONPATH under which ``modules`` cannot be imported, in this process's children and
    theirs (the measuring processes), as on a device where they are not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n")
    return os.pathsep.join([str(folder), str(REPO), os.environ.get("PYTHONPATH", "")])


def test_every_model_benched_with_the_json_schema(report, bundle: Path, bench_json: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    rows = _rows(report)
    assert set(rows) == ROWS
    data = json.loads(bench_json.read_text())
    assert data["schema"] == 3 and check_schema(data, "bench.json") is data
    assert data == json.loads((bundle / "bench" / "cpu" / "bench.json").read_text())  # one report folder per device
    assert {"cpu", "cores", "usable_cores", "governor", "os", "python", "packages"} <= set(data["host"])
    assert data["host"]["packages"]["ai-edge-litert"]
    for r in data["results"]:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["status"] == "ok", r
        assert LATENCY_KEYS <= set(r) and not {"latency_ms", "accuracy", "throughput", "peak_rss_mb"} & set(r)
        assert 0 < r["min_us"] <= r["p50_us"] <= r["p90_us"] <= r["p99_us"] and r["std_us"] >= 0
        assert 0.0 <= r["accuracy_frac"] <= 1.0 and r["accuracy_images"] == manifest["eval"]["count"]
        assert r["size_bytes"] == (bundle / r["file"]).stat().st_size
        assert r["macs"] == manifest["roles"][r["model"]]["macs"]
        assert r["gmacs_per_s"] == pytest.approx(r["macs"] / (r["p50_us"] / 1e6) / 1e9)
        assert r["throughput_per_s"] == pytest.approx(1e6 / r["mean_us"])
        assert r["threads"] == 1 and isinstance(r["noisy"], bool)
        assert isinstance(r["peak_rss_bytes"], int) and r["peak_rss_bytes"] > r["base_rss_bytes"] > 1 << 20
    headline = data["comparisons"][0]
    assert (headline["student"], headline["teacher"], headline["headline"]) == ("tflite_int8", "tflite_fp32", True)
    s, t = rows["student", "tflite_int8"], rows["teacher", "tflite_fp32"]
    assert headline["speedup"] == pytest.approx(t["p50_us"] / s["p50_us"])
    assert headline["accuracy_delta_frac"] == pytest.approx(s["accuracy_frac"] - t["accuracy_frac"])


def test_report_files_and_bundle_still_verifies(report, bundle: Path) -> None:
    out = bundle / "bench" / "cpu"
    assert report.outputs["markdown"] == str(out / "bench.md") and report.outputs["plot"] == str(out / "bench.png")
    md = (out / "bench.md").read_text()
    assert "| student | tflite_int8 | ok" in md and "![accuracy vs latency](bench.png)" in md
    assert "## Student vs teacher" in md and "(headline)" in md
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert verify_bundle(bundle).passed  # the report folder inside the bundle is not part of it


def test_accuracy_matches_an_independent_evaluation(report, bundle: Path) -> None:
    from edgekd.runtimes import open_runner

    with np.load(bundle / "eval.npz") as data:
        images, labels = data["images"], data["labels"]
    for fmt, name in (("tflite_int8", "student_int8.tflite"), ("onnx", "student.onnx")):
        expected = float((open_runner(bundle / name, threads=1).predict(images).argmax(1) == labels).mean())
        assert _rows(report)["student", fmt]["accuracy_frac"] == expected


def test_peak_memory_is_per_model_not_cumulative(report) -> None:
    """TFLite rows run after the PyTorch rows (and under a pytest holding torch and TensorFlow):
    their peak memory must be their own process's, far below a process that imported torch."""
    rows = _rows(report)
    for model in ("student", "teacher"):
        assert rows[model, "tflite_fp32"]["peak_rss_bytes"] < 0.5 * rows[model, "pytorch"]["peak_rss_bytes"]
        assert rows[model, "tflite_fp32"]["rss_source"] == "VmHWM"


def test_tampered_or_missing_bundle_is_refused(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / "student_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "student_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"failed verification: student_int8.tflite: sha256 mismatch"):
        bench(artifacts=copy, **FAST)
    capsys.readouterr()
    assert main(["bench", "--artifacts", str(copy), "--runs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd: error: bundle") and "sha256 mismatch" in err and len(err.splitlines()) == 1
    with pytest.raises(BundleError, match="bundle not found"):
        bench(artifacts=tmp_path / "nope", **FAST)


def test_missing_runtime_is_a_skipped_row(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _blocking_sitecustomize(tmp_path / "shim", ["onnxruntime"]))
    result = bench(artifacts=bundle, out=tmp_path / "out", models="student", formats="onnx,tflite_int8", **FAST)
    rows = _rows(result)
    assert set(rows) == {("student", "onnx"), ("student", "tflite_int8")}
    skipped = rows["student", "onnx"]
    assert skipped["status"] == "skipped" and "onnxruntime is not installed" in skipped["reason"]
    assert skipped["p50_us"] is None and skipped["accuracy_frac"] is None and skipped["size_bytes"] > 0
    assert rows["student", "tflite_int8"]["status"] == "ok"


def test_model_that_fails_to_load_fails_its_row_only(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "student_fp32.tflite").write_bytes(b"not a flatbuffer" * 64)
    _reseal(copy)
    result = bench(artifacts=copy, out=tmp_path / "out", models="student", formats="tflite_fp32,tflite_int8", **FAST)
    rows = _rows(result)
    failed = rows["student", "tflite_fp32"]
    assert failed["status"] == "failed" and failed["stage"] == "load"
    assert "cannot load student_fp32.tflite" in failed["reason"]
    assert rows["student", "tflite_int8"]["status"] == "ok"
    out = capsys.readouterr().out
    assert "FAILED (load)" in out and "student/tflite_fp32 failed (load): cannot load" in out


def test_file_that_is_not_its_format_fails_its_row(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The fp32 and int8 files swapped, resealed: each row's file has the other format's input and
    output dtypes. The float file ran as an 'ok' tflite_int8 row (exit 0), with float figures."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("bench"))
    fp32, int8 = (copy / "student_fp32.tflite").read_bytes(), (copy / "student_int8.tflite").read_bytes()
    (copy / "student_fp32.tflite").write_bytes(int8)
    (copy / "student_int8.tflite").write_bytes(fp32)
    _reseal(copy)
    capsys.readouterr()
    args = ["bench", "--artifacts", str(copy), "--out", str(tmp_path / "out"), "--models", "student"]
    assert main([*args, "--formats", "tflite_int8,tflite_fp32,onnx", "--runs", "2", "--warmup", "0"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgekd:")]
    assert len(err) == 1 and err[0].startswith("edgekd: bench: 2 of 3 rows failed: "), err
    rows = {(r["model"], r["format"]): r for r in json.loads((tmp_path / "out" / "bench.json").read_text())["results"]}
    int8_row, fp32_row = rows["student", "tflite_int8"], rows["student", "tflite_fp32"]
    assert int8_row["status"] == fp32_row["status"] == "failed" and int8_row["stage"] == fp32_row["stage"] == "load"
    assert int8_row["reason"] == (
        "student_int8.tflite is not a tflite_int8 file: input float32, output float32 "
        "(tflite_int8 has int8 input and output; re-export the bundle)"
    )
    assert "student_fp32.tflite is not a tflite_fp32 file: input int8, output int8" in fp32_row["reason"]
    assert int8_row["p50_us"] is None and int8_row["accuracy_frac"] is None
    assert rows["student", "onnx"]["status"] == "ok"
    assert "student/tflite_int8 failed (load): student_int8.tflite is not a tflite_int8 file" in err[0]


def test_eval_data_not_matching_the_model_input(bundle: Path, tmp_path: Path) -> None:
    """Images of another size than the input the manifest records are refused before any row runs
    (test_bench_refuses_malformed_eval_images_up_front); where the manifest does not say (no input
    entry), each row still checks the images against its model file's own input."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with np.load(copy / "eval.npz") as data:
        labels, classes = data["labels"], data["classes"]
    np.savez_compressed(
        copy / "eval.npz", images=np.zeros((len(labels), 9, 9, 1), np.uint8), labels=labels, classes=classes
    )
    _reseal(copy)
    options = {"models": "student", "formats": "tflite_int8,onnx", **FAST}
    with pytest.raises(BenchError, match=r"eval data eval.npz does not match the model input: images are 9×9×1"):
        bench(artifacts=copy, out=tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
    manifest = json.loads((copy / MANIFEST).read_text())
    for entry in manifest["models"].values():
        entry.pop("input", None)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    result = bench(artifacts=copy, out=tmp_path / "out", **options)
    for row in result.results:
        assert row["status"] == "failed" and row["stage"] == "eval", row
        assert "eval data does not match the model input: images are 9×9×1 (H×W×C)" in row["reason"]
        assert "takes 8×8×1" in row["reason"]


def test_a_bundle_whose_models_take_different_inputs_runs_the_rows_its_eval_data_fits(
    bundle: Path, tmp_path: Path
) -> None:
    """One model whose recorded input the eval images do not fit refused the whole bundle (exit 2)
    although the others could be measured: now that row fails, named (exit 1), the rest run."""
    import torch

    from edgekd.exporters.to_onnx import torch_to_onnx

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    onnx_name = next(n for n, e in manifest["models"].items() if e["role"] == "student" and e["format"] == "onnx")
    nine = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(81, 10))  # a student for 9×9 images
    torch_to_onnx(nine, copy / onnx_name, (1, 1, 9, 9))
    manifest["models"][onnx_name]["input"]["shape"] = [1, 1, 9, 9]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    _reseal(copy)
    result = bench(artifacts=copy, out=tmp_path / "out", models="student", formats="tflite_int8,onnx", **FAST)
    rows = {row["format"]: row for row in result.results}
    assert rows["tflite_int8"]["status"] == "ok", rows["tflite_int8"]
    assert rows["onnx"]["status"] == "failed" and rows["onnx"]["stage"] == "eval"
    assert "does not match the model input: images are 8×8×1 (H×W×C)" in rows["onnx"]["reason"]
    assert "takes 9×9×1" in rows["onnx"]["reason"]


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("nan", "eval labels must be integer class indices, got float32 with 1 NaN or infinite values"),
        ("float", "eval labels must be integer class indices, got float64"),
        ("bool", "eval labels must be integer class indices, got bool"),
        ("column", "eval labels have shape [{n}, 1], the images [{n}, 8, 8, 1]: expected {n} labels (one per image)"),
    ],
    ids=["nan", "float", "bool", "column"],
)
@pytest.mark.parametrize("device", ["cpu", "mcu", "rpi"])
def test_bench_refuses_malformed_eval_labels_up_front(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str, needle: str, device: str
) -> None:
    """Float labels (NaN among them) passed the range check (NaN compares false) and scored as an
    'ok' row; a column of labels failed every row (exit 1, a report written). Both are a broken
    bundle, refused before anything is measured: one line, exit 2, nothing written. On the Pi
    (--device rpi, --force: this host is not one) the check runs with numpy alone, no torch."""
    labels = eval_data(tiny_bundle)["labels"]
    if damage == "nan":
        labels = labels.astype(np.float32)
        labels[0] = np.nan
    elif damage == "float":
        labels = labels.astype(np.float64)  # whole numbers, a float dtype all the same
    elif damage == "bool":
        labels = labels > 0
    else:
        labels = labels[:, None]
    copy = tmp_path / "copy"
    before = with_eval_arrays(tiny_bundle, copy, labels=labels)
    out = tmp_path / "report"
    args = ["bench", "--artifacts", str(copy), "--out", str(out), "--runs", "2", "--warmup", "0"]
    code, err = _bench_cli(args, device, tmp_path, capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert code == 2 and "Traceback" not in err, err
    expected = "eval data eval.npz is malformed: " + needle.format(n=len(labels)) + " (re-export the bundle)"
    assert len(errors) == 1 and expected in errors[0], errors
    assert not out.exists() and file_tree(copy) == before


def _bench_cli(args: list[str], device: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``edgekd <args> --device <device>``: (exit code, stderr); the Pi's in a process of its own
    where torch, TensorFlow, ONNX Runtime and the host's display libraries cannot be imported."""
    if device == "rpi":
        blocked = ["torch", "tensorflow", "onnxruntime", "matplotlib", "rich", "yaml"]
        env = {**os.environ, "PYTHONPATH": _blocking_sitecustomize(tmp_path / "shim", blocked)}
        cmd = [sys.executable, "-m", "edgekd", *args, "--device", "rpi", "--force"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
        return proc.returncode, proc.stderr
    capsys.readouterr()
    code = main([*args, "--device", device])
    return code, capsys.readouterr().err


def _damaged_images(images: np.ndarray, damage: str) -> np.ndarray:
    if damage == "float":
        return images.astype(np.float32)  # whole pixel values, a float dtype all the same
    if damage == "nan":
        bad = images.astype(np.float64)
        bad[0, 0, 0, 0] = np.nan
        return bad
    if damage == "3d":
        return images[..., 0]  # the channel axis dropped
    if damage == "count":
        return images[:-1]
    if damage == "size":
        return np.zeros((len(images), 9, 9, images.shape[3]), np.uint8)
    return np.repeat(images, 3, axis=3)  # channels: RGB for a grayscale model


IMAGE_DAMAGE = [
    ("float", "is malformed: eval images are float32 of shape [{n}, 8, 8, 1]; edgekd writes uint8 N×H×W×C"),
    (
        "nan",
        "is malformed: eval images are float64 of shape [{n}, 8, 8, 1] with 1 NaN or infinite values; edgekd "
        "writes uint8 N×H×W×C",
    ),
    ("3d", "is malformed: eval images have shape [{n}, 8, 8]; edgekd writes uint8 N×H×W×C (4 dimensions)"),
    ("count", "is malformed: {m} eval images but {n} labels (one per image)"),
    (
        "size",
        "does not match the model input: images are 9×9×1 (H×W×C), student.pt takes 8×8×1 (input [1, 1, 8, 8] NCHW)",
    ),
    (
        "channels",
        "does not match the model input: images are 8×8×3 (H×W×C), student.pt takes 8×8×1 (input [1, 1, 8, 8] NCHW)",
    ),
]


@pytest.mark.parametrize(("damage", "needle"), IMAGE_DAMAGE, ids=[d for d, _ in IMAGE_DAMAGE])
@pytest.mark.parametrize("device", ["cpu", "mcu", "rpi"])
def test_bench_refuses_malformed_eval_images_up_front(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str, needle: str, device: str
) -> None:
    """Float images (NaN among them) and images of another height, width or channel count than the
    model input the manifest records failed every row (exit 1, a report written); 3-D images and
    fewer images than labels were refused with a bare list of shapes. Each is a broken eval.npz,
    refused before anything is measured with one line that says what is wrong: exit 2, no report,
    the bundle as it was; from bench() as a BenchError. On the Pi (--device rpi, --force: this
    host is not one) the check runs with numpy alone, no torch."""
    images = eval_data(tiny_bundle)["images"]
    bad = _damaged_images(images, damage)
    copy = tmp_path / "copy"
    before = with_eval_arrays(tiny_bundle, copy, images=bad)
    expected = "eval data eval.npz " + needle.format(n=len(images), m=len(bad)) + " (re-export the bundle)"
    out = tmp_path / "report"
    options = {"force": True} if device == "rpi" else {}
    with pytest.raises(BenchError) as caught:
        bench(artifacts=copy, out=out, device=device, runs=2, warmup=0, **options)
    assert str(caught.value) == expected
    args = ["bench", "--artifacts", str(copy), "--out", str(out), "--runs", "2", "--warmup", "0"]
    code, err = _bench_cli(args, device, tmp_path, capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("edgekd:")]
    assert code == 2 and "Traceback" not in err, err
    assert errors == ["edgekd: error: " + expected], errors
    assert not out.exists() and file_tree(copy) == before


def test_full_test_split_accuracy(report, bundle: Path, tmp_path: Path) -> None:
    """--full-test reloads the run's data; for digits eval.npz already is the whole test split
    (500 requested, 359 exist), so both must give the same images, count and accuracy."""
    result = bench(
        artifacts=bundle, out=tmp_path / "out", models="student", formats="tflite_int8", full_test=True, **FAST
    )
    row = result.results[0]
    assert (
        result.settings["eval"] == "the full test split"
        and result.settings["eval_count"] == row["accuracy_images"] == 359
    )
    assert row["accuracy_frac"] == _rows(report)["student", "tflite_int8"]["accuracy_frac"]


def test_min_accuracy_gate_exit_code(report, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    accuracy = _rows(report)["student", "tflite_int8"]["accuracy_frac"]
    assert accuracy < 1.0  # a one-epoch student; otherwise no floor could be above it
    args = [
        "bench",
        "--artifacts",
        str(bundle),
        "--out",
        str(tmp_path / "out"),
        "--models",
        "student",
        "--formats",
        "tflite_int8",
        "--runs",
        "3",
        "--threads",
        "1",
    ]
    capsys.readouterr()
    assert (
        main([*args, "--min-accuracy", f"{min(1.0, accuracy + 0.01):.4f}", "--json", str(tmp_path / "gate.json")]) == 1
    )
    err = capsys.readouterr().err
    assert "accuracy floor" in err and "student/tflite_int8" in err
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate["gate"]["passed"] is False and gate["results"][0]["below_floor"] is True
    assert main([*args, "--min-accuracy", f"{max(0.0, accuracy - 0.01):.4f}"]) == 0
    assert main([*args, "--min-accuracy", "95"]) == 2
    assert "fraction between 0 and 1" in capsys.readouterr().err


def test_bad_names_get_suggestions(bundle: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown bench target 'cpuu'; did you mean 'cpu'\?"):
        bench(artifacts=bundle, device="cpuu")
    with pytest.raises(BenchError, match=r"unknown format 'tflite_int9'; did you mean 'tflite_int8'\?"):
        bench(artifacts=bundle, formats="tflite_int9")
    with pytest.raises(BenchError, match="--runs must be an integer from 1 to 1000000, got 0"):
        bench(artifacts=bundle, runs=0)


def test_latest_bundle(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no bundle in"):
        latest_bundle(tmp_path)
    for i, name in enumerate(["b", "a"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST).write_text("{}")
        os.utime(tmp_path / name / MANIFEST, (1000 + i, 1000 + i))
    assert latest_bundle(tmp_path) == tmp_path / "a"


def test_latency_stats_and_noise_flag() -> None:
    stats = latency_stats([1_000_000] * 9 + [2_000_000])  # ns: nine 1 ms runs, one 2 ms
    assert (
        stats["min_us"] == stats["p50_us"] == 1000.0
        and stats["p90_us"] == pytest.approx(1100.0)
        and stats["mean_us"] == pytest.approx(1100.0)
    )
    assert not is_noisy(latency_stats([1_000_000, 1_010_000, 1_020_000, 990_000]))
    assert is_noisy(latency_stats([1_000_000] * 5 + [3_000_000] * 5))  # p90 far above p50


def test_pareto_front() -> None:
    def row(name: str, p50: float, acc: float, status: str = "ok") -> dict:
        return {"model": name, "format": "x", "status": status, "p50_us": p50, "accuracy_frac": acc}

    rows = [
        row("slow-good", 10, 0.99),
        row("fast-bad", 1, 0.80),
        row("dominated", 5, 0.70),
        row("mid", 3, 0.95),
        row("failed", 0.1, 1.0, "failed"),
    ]
    assert [r["model"] for r in pareto_front(rows)] == ["fast-bad", "mid", "slow-good"]


@pytest.mark.parametrize("device", ["cpu", "rpi"])
def test_tflite_path_without_torch_tensorflow_onnxruntime(bundle: Path, tmp_path: Path, device: str) -> None:
    """The Raspberry Pi install: numpy + ai-edge-litert. torch, TensorFlow, ONNX Runtime,
    matplotlib, rich and PyYAML are unimportable in the bench process and its measuring processes;
    with --device rpi (--force: this host is not a Pi) every TFLite model runs at 1 and 4 threads."""
    blocked = ["torch", "tensorflow", "onnxruntime", "matplotlib", "rich", "yaml"]
    env = {**os.environ, "PYTHONPATH": _blocking_sitecustomize(tmp_path / "shim", blocked)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr  # the shim is in force
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "edgekd",
        "bench",
        "--artifacts",
        str(bundle),
        "--out",
        str(out),
        "--json",
        str(tmp_path / "pi.json"),
        "--runs",
        "3",
        "--warmup",
        "1",
    ]
    cmd += ["--threads", "1"] if device == "cpu" else ["--device", "rpi", "--force"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "pi.json").read_text())
    rows = {(r["model"], r["format"], r["threads"]): r for r in data["results"]}
    threads = (1,) if device == "cpu" else (1, 4)
    assert {(m, f) for m, f, _ in rows} == ROWS
    for (_model, fmt, _n), r in rows.items():
        if fmt.startswith("tflite"):
            assert r["status"] == "ok" and r["p50_us"] > 0, r
        elif device == "cpu":
            assert r["status"] == "skipped", r
            assert ("torch is not installed" if fmt == "pytorch" else "onnxruntime is not installed") in r["reason"]
        else:
            assert r["status"] == "skipped" and "runs the TFLite models only" in r["reason"], r
    assert {n for _, f, n in rows if f.startswith("tflite")} == set(threads)
    if device == "cpu":
        assert "student/pytorch skipped: torch is not installed" in proc.stdout
    else:
        assert data["settings"]["thread_counts"] == [1, 4] and data["host"]["forced"] is True
        assert {"before", "after"} <= set(data["host"]["conditions"])
    assert "┃" not in proc.stdout and "tflite_int8" in proc.stdout  # the plain-text table, not rich's
    assert "plot skipped: matplotlib is not installed" in (out / "bench.md").read_text()
    assert not (out / "bench.png").exists()


def test_bench_modules_import_nothing_heavy() -> None:
    """What runs on the device side imports no framework, plotting, YAML or rich at module level."""
    from test_lean_import import HEAVY, imported_after

    loaded = imported_after(
        "import edgekd.benchmark, edgekd.benchmark.worker, edgekd.benchmark.plot, edgekd.benchmark.pi, edgekd.cli, "
        "edgekd.deploy, edgekd.tflite_file, edgekd.mcu.estimate, edgekd.benchmark.mcu_worker, "
        "edgekd.runtimes.tflm_runner, "
        "edgekd.formats, edgekd.predict; edgekd.bench; edgekd.deploy; edgekd.Predictor"
    )
    assert not loaded & {*HEAVY, "rich"}, loaded & {*HEAVY, "rich"}


def test_a_lone_model_that_is_no_regular_file_is_said_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A device or FIFO named as --model was 'model file not found' (and reading /dev/zero never ends)."""
    (tmp_path / "zero.tflite").symlink_to("/dev/zero")
    for name, needle in (("zero.tflite", "is a character device, not a regular file"), ("none.tflite", "no such file")):
        assert main(["bench", "--model", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("edgekd: error: --model") and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
