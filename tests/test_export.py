"""The export stage: every format round-trips, parity is measured and enforced, the bundle is
checksummed, atomic and built without the network; the int8 model runs under TFLite Micro."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_tflm_matches_litert
from edgekd.benchmark.errors import BenchError
from edgekd.bundle import MANIFEST, BundleError, require_verified, sha256_file, verify_bundle
from edgekd.errors import ConfigError, EdgekdError
from edgekd.exporters.errors import ExportError, ParityError
from edgekd.exporters.export import export

ALL_STUDENT_FORMATS = "[pytorch,onnx,tflite_fp32,tflite_int8,tflite_fp16,tflite_dynamic,tflite_int16x8]"


class NetworkUsed(AssertionError):
    pass


def _no_network(*args, **kwargs):
    raise NetworkUsed(f"network access attempted: {args[:2]}")


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle with every student format, built with all network access failing loudly."""
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        # the 4-channel test student is too small for the 99 % int8 agreement a real student meets
        # (see test_slow_pipeline); its bound here is 95 %
        export(run=run_dir, out=out, set=[f"export.formats={ALL_STUDENT_FORMATS}", "export.min_top1_agreement=0.95"])
    assert list(cwd.iterdir()) == []  # the converters leave nothing in the working directory
    return out


def test_network_block_is_real() -> None:
    """The block used above does stop onnx2tf's own sample download (so the bundle test can fail)."""
    from edgekd.exporters.tf_import import import_onnx2tf

    import_onnx2tf()
    import onnx2tf.utils.common_functions as common

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.chdir(Path(__file__).parent)  # no cached sample file here
        with pytest.raises(Exception):  # noqa: B017 - whatever the library raises, it must not reach the network
            common.download_test_image_data()


def test_onnx2tf_leaves_the_recursion_limit_as_it_was(bundle: Path) -> None:
    """Importing onnx2tf sets the recursion limit to the C int maximum for the whole process; a
    deeply nested JSON file read afterwards (a library user's script, this suite) then overflowed
    the C stack: a segmentation fault where a RecursionError was caught. The export (the fixture,
    in this process) leaves the limit as it was; onnx2tf has its own while it converts."""
    from edgekd.exporters.tf_import import import_onnx2tf, onnx2tf_recursion

    ours = sys.getrecursionlimit()
    assert ours < 1_000_000
    import_onnx2tf()
    assert sys.getrecursionlimit() == ours
    with onnx2tf_recursion():
        assert sys.getrecursionlimit() == 2**31 - 1  # onnx2tf's own
    assert sys.getrecursionlimit() == ours
    with pytest.raises(RecursionError):
        json.loads("[" * 1_000_000 + "]" * 1_000_000)


def test_bundle_files_and_manifest_schema(bundle: Path) -> None:
    expected = {
        "student.pt",
        "student.onnx",
        "student_fp32.tflite",
        "student_int8.tflite",
        "student_fp16.tflite",
        "student_dynamic.tflite",
        "student_int16x8.tflite",
        "teacher.pt",
        "teacher.onnx",
        "teacher_fp32.tflite",
        "student_int8_model_data.cc",
        "student_int8_model_data.h",
        "eval.npz",
        "config.yaml",
        "summary.json",
        "quant_report.json",
        MANIFEST,
    }
    assert {p.name for p in bundle.iterdir()} == expected
    m = json.loads((bundle / MANIFEST).read_text())
    assert set(m["files"]) == expected - {MANIFEST}
    for name, rec in m["files"].items():
        assert rec["sha256"] == sha256_file(bundle / name) and rec["bytes"] == (bundle / name).stat().st_size
    assert m["labels"] == [str(i) for i in range(10)]
    for name, entry in m["models"].items():
        for key in ("shape", "layout", "dtype", "mean", "std", "scale", "zero_point"):
            assert key in entry["input"], (name, key)
        for key in ("test_acc", "top1_agreement", "max_abs_diff"):
            assert key in m["metrics"][name], (name, key)
    assert m["models"]["student.onnx"]["input"]["layout"] == "NCHW"
    assert m["models"]["student_fp32.tflite"]["input"]["layout"] == "NHWC"
    assert m["roles"]["student"]["params"] > 0 and m["roles"]["student"]["macs"] > 0
    assert {"edgekd", "torch", "onnx", "tensorflow"} <= set(m["versions"])
    assert m["parity_ok"] is True


def test_int16x8_model_is_a_checked_bundle_format(bundle: Path, tmp_path: Path) -> None:
    """16x8 (int8 weights, int16 activations): written by export, opened by the TFLite runner,
    parity-checked against PyTorch, benched on the CPU; the MCU target names why it does not run it."""
    from edgekd.benchmark.run import bench
    from edgekd.runtimes import open_runner

    m = json.loads((bundle / MANIFEST).read_text())
    entry = m["models"]["student_int16x8.tflite"]
    assert entry["format"] == "tflite_int16x8"
    assert entry["input"]["dtype"] == "int16" and entry["output"]["dtype"] == "int16"
    metrics = m["metrics"]["student_int16x8.tflite"]
    # int16 activations: at least as close to PyTorch as int8 (256 times finer steps)
    assert metrics["top1_agreement"] >= m["metrics"]["student_int8.tflite"]["top1_agreement"]
    assert metrics["max_abs_diff"] < m["metrics"]["student_int8.tflite"]["max_abs_diff"]
    # the export's MCU column asks TFLite Micro itself: the digits student's ops all have int16 kernels
    assert metrics["mcu"]["status"] == "ok" and metrics["mcu"]["ok"] is True, metrics["mcu"]
    runner = open_runner(bundle / "student_int16x8.tflite", threads=1)
    eval_images = np.load(bundle / "eval.npz")["images"][:8]
    assert runner.predict(eval_images).shape == (8, 10)
    cpu = bench(artifacts=bundle, out=tmp_path / "cpu", models="student", formats="tflite_int16x8", runs=3, warmup=1)
    assert cpu.results[0]["status"] == "ok" and cpu.results[0]["accuracy_frac"] is not None
    with pytest.raises(BenchError, match="student_int16x8.tflite on mcu: .*int16 activations"):
        bench(model=bundle / "student_int16x8.tflite", device="mcu", out=tmp_path / "mcu")  # one file: bad input


def test_int8_model_is_full_integer(bundle: Path) -> None:
    m = json.loads((bundle / MANIFEST).read_text())
    entry = m["models"]["student_int8.tflite"]
    assert entry["input"]["dtype"] == "int8" and entry["output"]["dtype"] == "int8"
    # raw pixels quantize exactly: q = pixel − 128
    assert entry["input"]["scale"] == pytest.approx(1.0) and entry["input"]["zero_point"] == -128
    assert "DEQUANTIZE" not in entry["ops"] and "QUANTIZE" not in entry["ops"]
    # the folded normalization is one per-channel 1×1 conv (one requantization), not MUL + ADD
    # (with one input channel the depthwise conv is a plain CONV_2D)
    assert entry["ops"][0] == "CONV_2D" and "MUL" not in entry["ops"] and "ADD" not in entry["ops"]
    # the dynamic-range variant is NOT full integer (float I/O): exactly what a peer mislabels "int8"
    assert m["models"]["student_dynamic.tflite"]["input"]["dtype"] == "float32"

    from edgekd.runtimes.tflite_runner import full_integer_problems

    assert full_integer_problems(bundle / "student_int8.tflite") == []
    problems = full_integer_problems(bundle / "student_dynamic.tflite")
    assert any(p.startswith("input") and p.endswith("float32") for p in problems) and any(
        "float tensor" in p for p in problems
    )


def test_int8_model_runs_under_tflite_micro(bundle: Path) -> None:
    # the kernels round differently (TFLM reference, LiteRT builtin, XNNPACK): measured up to 3
    # output steps between TFLM and XNNPACK on int8 ResNet-8s with MEAN and AVERAGE_POOL_2D alike
    assert_tflm_matches_litert(bundle / "student_int8.tflite", np.load(bundle / "eval.npz")["images"][:20], steps=3)


def test_parity_metrics_in_bounds(bundle: Path) -> None:
    m = json.loads((bundle / MANIFEST).read_text())
    for name in ("student.onnx", "student_fp32.tflite", "teacher.onnx", "teacher_fp32.tflite", "student.pt"):
        assert m["metrics"][name]["max_abs_diff"] < 1e-3, name
        assert m["metrics"][name]["top1_agreement"] == 1.0, name
    int8 = m["metrics"]["student_int8.tflite"]
    assert int8["top1_agreement"] >= 0.95 and int8["reference_acc"] - int8["test_acc"] <= 0.005
    assert m["parity_bounds"]["min_top1_agreement"] == 0.95
    assert int8["n"] == 359  # the whole digits test split


def test_eval_npz_is_raw_uint8(bundle: Path) -> None:
    data = np.load(bundle / "eval.npz")
    assert data["images"].dtype == np.uint8 and data["images"].shape[1:] == (8, 8, 1)
    assert len(data["images"]) == len(data["labels"]) == 359  # fewer test images than eval_samples (500)
    assert list(data["classes"]) == [str(i) for i in range(10)]


def test_c_array_compiles_and_matches(bundle: Path, tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    cc = bundle / "student_int8_model_data.cc"
    main = tmp_path / "check.cc"
    # one translation unit that includes the array's definition, so its size is known at compile time
    main.write_text(
        '#include "student_int8_model_data.cc"\n'
        f"static_assert(sizeof(g_student_int8_model_data) == {(bundle / 'student_int8.tflite').stat().st_size}, "
        '"size");\n'
    )
    for source in (cc, main):  # the .cc alone (as a project compiles it), then the size check
        proc = subprocess.run(
            [gxx, "-std=c++17", "-fsyntax-only", "-Wall", f"-I{bundle}", str(source)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    assert proc.returncode == 0, proc.stderr
    text = cc.read_text()
    assert f"g_student_int8_model_data_len = {(bundle / 'student_int8.tflite').stat().st_size};" in text
    assert "alignas(16)" in text


def test_verify_detects_tampering(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    assert verify_bundle(copy).passed
    data = bytearray((copy / "student_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "student_int8.tflite").write_bytes(bytes(data))
    result = verify_bundle(copy)
    assert result.bad == ["student_int8.tflite: sha256 mismatch (file altered or corrupt)"]
    with pytest.raises(BundleError, match="student_int8.tflite: sha256 mismatch"):
        require_verified(copy)
    (copy / "teacher.onnx").unlink()
    (copy / "extra.tflite").write_bytes(b"x")
    bad = verify_bundle(copy).bad
    assert "teacher.onnx: missing" in bad and "extra.tflite: not in the manifest" in bad

    from edgekd.cli import main

    capsys.readouterr()
    assert main(["verify", str(copy)]) == 1
    err = capsys.readouterr().err.splitlines()  # named on stderr, one line, as bench's failed rows
    assert len(err) == 1 and err[0].startswith("edgekd: verify: 3 of ") and "teacher.onnx: missing" in err[0]
    assert main(["verify", str(bundle)]) == 0
    assert capsys.readouterr().err == ""
    for i in range(8):  # many bad files: the stderr line names five and counts the rest
        (copy / f"extra{i}.bin").write_bytes(b"x")
    assert main(["verify", str(copy)]) == 1
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("edgekd: verify: 11 of ") and err.endswith("; … and 6 more") and err.count(";") == 5


def test_a_manifest_of_too_many_files_is_malformed(bundle: Path, tmp_path: Path) -> None:
    """400,000 listed files took verify 81 s and a 9 MB stderr line; no bundle edgekd writes lists 1,000."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"].update({f"f{i}.bin": {"sha256": "0" * 64, "bytes": 1} for i in range(1001)})
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="it lists 1,0[0-9]{2} files; a bundle holds at most 1,000"):
        verify_bundle(copy)


def test_parity_failure_exits_nonzero_but_writes_the_bundle(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "strict"
    impossible = ["export.fp32_max_abs_diff=0", "export.formats=[onnx]", "export.models=[student]"]
    with pytest.raises(ParityError, match=r"student.onnx: max \|Δlogit\|"):
        export(run=run_dir, out=out, set=impossible)
    m = json.loads((out / MANIFEST).read_text())
    assert m["parity_ok"] is False and m["metrics"]["student.onnx"]["ok"] is False
    manifest = export(run=run_dir, out=out, set=impossible, allow_parity_failure=True)
    assert manifest["parity_ok"] is False

    from edgekd.cli import main

    assert (
        main(["export", "--run", str(run_dir), "--out", str(out), *[x for s in impossible for x in ("--set", s)]]) == 1
    )
    err = capsys.readouterr().err
    assert "edgekd: error: parity out of bounds" in err and "Traceback" not in err


def test_reexport_replaces_atomically_and_failure_keeps_old(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b"
    quick = ["export.formats=[pytorch,onnx]", "export.models=[student]"]
    export(run=run_dir, out=out, set=quick)
    before = (out / MANIFEST).read_text()

    import edgekd.exporters.export as exp

    def boom(*args, **kwargs):
        raise ExportError("simulated converter crash")

    monkeypatch.setattr(exp, "_model_entry", boom)
    with pytest.raises(ExportError, match="simulated"):
        export(run=run_dir, out=out, set=quick)
    assert (out / MANIFEST).read_text() == before and verify_bundle(out).passed
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left behind
    monkeypatch.undo()
    export(run=run_dir, out=out, set=quick + ["export.eval_samples=50"])
    assert json.loads((out / MANIFEST).read_text())["eval"]["count"] == 50


def test_a_file_put_in_the_old_bundle_during_the_export_is_kept(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the bundle was checked only before the minutes of work; the swap deleted what came meanwhile
    import edgekd.exporters.export as exp
    from edgekd.outputs import OutputError

    out = tmp_path / "b"
    quick = ["export.formats=[pytorch]", "export.models=[student]"]
    export(run=run_dir, out=out, set=quick)
    real_record = exp.file_record

    def record_and_add_a_note(path: Path) -> dict:
        (out / "notes.txt").write_text("mine")
        return real_record(path)

    monkeypatch.setattr(exp, "file_record", record_and_add_a_note)
    with pytest.raises(OutputError, match="it holds notes.txt, which is not part of the bundle"):
        export(run=run_dir, out=out, set=quick)
    assert (out / "notes.txt").read_text() == "mine" and verify_bundle(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # the new bundle's temporary removed


def test_bad_export_input(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="is not a finished distill run"):
        export(run=tmp_path, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown export format 'tflite_int4'"):
        export(run=run_dir, out=tmp_path / "x", set=["export.formats=[tflite_int4]"])
    with pytest.raises(ConfigError, match="export takes export.\\* keys only"):
        export(run=run_dir, out=tmp_path / "x", set=["student.arch=plain2"])
    with pytest.raises(ConfigError, match="unknown key 'export.formts'"):
        export(run=run_dir, out=tmp_path / "x", set=["export.formts=[onnx]"])
    with pytest.raises(EdgekdError, match="has no teacher.pt"):
        shutil.copytree(run_dir, tmp_path / "noteacher")
        (tmp_path / "noteacher" / "teacher.pt").unlink()
        export(run=tmp_path / "noteacher", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_bundle_as_its_run(tiny_bundle: Path, tmp_path: Path) -> None:
    # a bundle has config.yaml, summary.json and student.pt, so it looked like a finished run and
    # was exported again
    with pytest.raises(EdgekdError, match="is an edgekd bundle, not a distill run"):
        export(run=tiny_bundle, out=tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_unconvertible_op_is_named(tmp_path: Path) -> None:
    import torch

    from edgekd.exporters.to_onnx import torch_to_onnx

    class Spectral(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft(x).abs().flatten(1)

    with pytest.raises(ExportError, match="cannot export spectral to ONNX: .*fft"):
        torch_to_onnx(Spectral(), tmp_path / "s.onnx", (1, 1, 8, 8), name="spectral")


def test_calibration_of_the_wrong_shape(bundle: Path, tmp_path: Path) -> None:
    from edgekd.exporters.to_tflite import onnx_to_tflite

    wrong = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(
        ExportError, match=r"calibration images are \(32, 32, 3\) \(HWC\) but student takes \(8, 8, 1\)"
    ):
        onnx_to_tflite(bundle / "student.onnx", {"tflite_int8": tmp_path / "x.tflite"}, wrong, name="student")
    with pytest.raises(ExportError, match="calibration data must be uint8"):
        onnx_to_tflite(
            bundle / "student.onnx", {"tflite_int8": tmp_path / "x.tflite"}, wrong.astype(np.float32), name="student"
        )


def test_tflite_backends_share_one_interface(run_dir: Path, tmp_path: Path) -> None:
    """Both backends are registered behind the same request; an ONNX graph is made only when a
    backend asks for it, once, and a misspelt backend is a config error naming the choices."""
    import torch

    from edgekd.exporters.to_tflite import TFLITE_BACKENDS, TFLiteRequest

    assert {"onnx2tf", "litert_torch"} <= set(TFLITE_BACKENDS.names())
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()).eval()
    request = TFLiteRequest(
        model, (1, 1, 8, 8), {}, np.zeros((2, 8, 8, 1), np.uint8), name="tiny", work_dir=tmp_path / "work"
    )
    assert not (tmp_path / "work").exists()
    first = request.onnx()
    assert first == tmp_path / "work" / "tiny_static.onnx" and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert request.onnx() == first and first.stat().st_mtime_ns == stamp  # exported once
    with pytest.raises(ConfigError, match="unknown TFLite backend 'litert'; did you mean 'litert_torch'"):
        export(run=run_dir, out=tmp_path / "x", set=["export.backend=litert"])


def test_litert_backend_missing_is_one_clear_line(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Selecting litert_torch where litert-torch is not installed (the project env) stops the export
    with one line saying how to install it, and leaves no bundle behind. ``None`` in sys.modules
    makes the import fail the same way where it is installed."""
    import sys

    from edgekd.exporters.to_tflite_litert import BackendMissing

    monkeypatch.setitem(sys.modules, "litert_torch", None)
    out = tmp_path / "lt"
    lite = ["export.backend=litert_torch", "export.formats=[tflite_int8]", "export.models=[student]"]
    with pytest.raises(BackendMissing, match=r"litert-torch .*pip install 'edgekd\[litert\]'"):
        export(run=run_dir, out=out, set=lite)
    assert not out.exists()

    from edgekd.cli import main

    assert main(["export", "--run", str(run_dir), "--out", str(out), *[x for s in lite for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert len(lines) == 1 and "pip install 'edgekd[litert]'" in lines[0] and "Traceback" not in err


def test_backend_comparison_rows(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison behind benchmarks/tflite_backends.py: one row per file with parity, size, ops,
    conversion time and a timed median; a backend this env lacks is reported, not fatal."""
    from edgekd.exporters import compare

    monkeypatch.setattr(compare, "backend_available", lambda backend: backend != "litert_torch")
    report = compare.compare_tflite_backends(
        run_dir, tmp_path / "cmp", formats=("tflite_fp32", "tflite_int8"), runs=20, warmup=2
    )
    by_backend = {r["backend"]: r for r in report["results"]}
    assert by_backend["litert_torch"]["error"].startswith("export failed: litert_torch is not installed here")
    rows = {row["format"]: row for row in report["rows"]}
    assert set(rows) == {"tflite_fp32", "tflite_int8"} and all(row["backend"] == "onnx2tf" for row in rows.values())
    assert rows["tflite_fp32"]["max_abs_diff"] < 1e-3 and rows["tflite_int8"]["full_integer_problems"] == []
    assert rows["tflite_int8"]["input_dtype"] == "int8" and "CONV_2D" in rows["tflite_int8"]["ops"]
    for row in rows.values():
        assert row["bytes"] == Path(row["file"]).stat().st_size and row["conversion_s"] > 0
        assert row["latency"]["runs"] >= 20 and 0 < row["latency"]["median_ms"] <= row["latency"]["p90_ms"]
    assert report["host"]["runtime"].startswith(("ai-edge-litert", "tflite-runtime"))
