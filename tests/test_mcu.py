"""Microcontroller-class bench: TFLite Micro op support, arena and accuracy on the host; flash and
per-profile latency estimates, checked against the published MLPerf Tiny ResNet-8 figures; the
flash/RAM budget; the TFLM application template."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA, reseal
from edgekd.benchmark import BenchError, bench
from edgekd.cli import main
from edgekd.errors import ArgumentError
from edgekd.mcu import estimate, profiles
from edgekd.mcu.codegen import resolver_method
from edgekd.registry import UnknownNameError
from edgekd.tflite_file import _OPS, _Reader, read_tflite

RESNET8 = SHARED_DATA / "mlperf-tiny" / "resnet8_quant.tflite"
TFLM_KEYS = {"ops_supported", "arena_bytes", "flash_bytes", "accuracy_frac", "est_latency_us"}
needs_resnet8 = pytest.mark.skipif(not RESNET8.is_file(), reason=f"{RESNET8} is not there (shared data)")


@pytest.fixture(scope="module")
def mcu_json(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("mcu")
    assert (
        main(
            [
                "bench",
                "--device",
                "mcu",
                "--artifacts",
                str(tiny_bundle),
                "--out",
                str(out / "report"),
                "--json",
                str(out / "mcu.json"),
            ]
        )
        == 0
    )
    return json.loads((out / "mcu.json").read_text()) | {"_out": str(out / "report")}


def test_bundle_int8_model_through_tflm(mcu_json: dict, tiny_bundle: Path) -> None:
    rows = {(r["model"], r["format"]): r for r in mcu_json["results"]}
    row = rows["student", "tflite_int8"]
    assert row["status"] == "ok" and row["p50_us"] is None  # TFLM's host time is never a latency
    tflm = row["tflm"]
    assert TFLM_KEYS <= set(tflm)
    assert (
        tflm["ops_supported"] is True and isinstance(tflm["arena_bytes"], int) and 0 < tflm["arena_bytes"] < 64 * 1024
    )
    assert tflm["flash_bytes"] == (tiny_bundle / "student_int8.tflite").stat().st_size + tflm["runtime_flash_bytes"]
    assert set(tflm["est_latency_us"]) == set(profiles.profile_names()) and all(
        v > 0 for v in tflm["est_latency_us"].values()
    )
    # TFLM's kernels against LiteRT's on the same int8 model and images: same predictions up to ties
    from edgekd.runtimes import open_runner

    with np.load(tiny_bundle / "eval.npz") as data:
        litert = float(
            (
                open_runner(tiny_bundle / "student_int8.tflite", 1).predict(data["images"]).argmax(1) == data["labels"]
            ).mean()
        )
    assert isinstance(tflm["accuracy_frac"], float) and abs(tflm["accuracy_frac"] - litert) <= 0.02
    for (_model, fmt), r in rows.items():
        if fmt != "tflite_int8":
            assert r["status"] == "skipped" and "int8 TFLite models only" in r["reason"]
    assert any("ESTIMATES" in note for note in mcu_json["notes"])


def test_generated_config_and_template_compile(mcu_json: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    """deploy/mcu/main.cc with the generated header and the bundle's C array: the real TFLM headers
    when TFLM_INCLUDE names them (tflite-micro, flatbuffers and gemmlowp include folders), else the
    clearly labelled declaration shim in tests/tflm_shim (no wheel or Debian package ships TFLM headers)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    config = Path(mcu_json["_out"]) / "student_int8_tflm_config.h"
    text = config.read_text()
    assert "kEdgekdArenaSize" in text and "resolver.AddConv2D()" in text and "resolver.AddFullyConnected()" in text
    includes = (
        os.environ.get("TFLM_INCLUDE", "").split(os.pathsep)
        if os.environ.get("TFLM_INCLUDE")
        else [str(REPO / "tests" / "tflm_shim")]
    )
    flags = [f"-I{p}" for p in (*includes, config.parent, tiny_bundle)]
    syntax = subprocess.run(
        [
            gxx,
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-DTF_LITE_STATIC_MEMORY",
            *flags,
            str(REPO / "deploy" / "mcu" / "main.cc"),
        ],
        capture_output=True,
        text=True,
    )
    assert syntax.returncode == 0, syntax.stderr
    obj = subprocess.run(
        [
            gxx,
            "-std=c++17",
            "-c",
            "-o",
            str(tmp_path / "model_data.o"),
            f"-I{tiny_bundle}",
            str(tiny_bundle / "student_int8_model_data.cc"),
        ],
        capture_output=True,
        text=True,
    )
    assert obj.returncode == 0, obj.stderr


def test_resolver_names() -> None:
    assert [
        resolver_method(op)
        for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "RELU6", "BATCH_MATMUL")
    ] == ["AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddAveragePool2D", "AddRelu6", "AddBatchMatMul"]


@needs_resnet8
def test_mlperf_reference_model_alone(tmp_path: Path) -> None:
    """The MLPerf Tiny ResNet-8 int8 reference: TFLM runs every op, the arena matches the ~56 KB the
    benchmark documents, and the MACs counted from the file match its stated 12,501,632."""
    assert (
        main(
            [
                "bench",
                "--device",
                "mcu",
                "--model",
                str(RESNET8),
                "--out",
                str(tmp_path / "r"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    tflm = row["tflm"]
    assert (
        row["status"] == "ok"
        and row["format"] == "tflite_int8"
        and row["accuracy_frac"] is None
        and tflm["accuracy_frac"] is None
    )
    assert tflm["ops_supported"] is True and 50_000 <= tflm["arena_bytes"] <= 60_000
    assert row["macs"] == tflm["macs"] == profiles.MLPERF_TINY_RESNET8_MACS
    assert (tmp_path / "r" / "resnet8_quant_tflm_config.h").is_file() and (
        tmp_path / "r" / "resnet8_quant_model_data.cc"
    ).is_file()


@needs_resnet8
def test_latency_estimate_against_published_mlperf_figures() -> None:
    """Fitted on the STM32H7A3 only (the table's coefficient must be what the fit gives), checked on
    the STM32F746 (same core, another clock) and the STM32L4R5 (Cortex-M4, a prior core factor)."""
    model = read_tflite(RESNET8)
    fit = [r for r in profiles.MLPERF_TINY_RESNET8 if r.role == "fit"]
    assert len(fit) == 1 and estimate.fit_conv_cycles(model, fit[0]) == pytest.approx(
        profiles.CONV_CYCLES_PER_MAC, abs=5e-4
    )
    errors = {}
    for ref in profiles.MLPERF_TINY_RESNET8:
        est = estimate.estimate_ms(model, profiles.PROFILES.get(ref.profile))
        errors[ref.board] = est / ref.mid_ms - 1
        if ref.role == "check":
            # within 20 % of the published midpoint, and never off by more than 10 % of the range's edge
            assert abs(errors[ref.board]) <= 0.20, (ref.board, est)
            assert ref.low_ms * 0.9 <= est <= ref.high_ms * 1.1, (ref.board, est)
    assert abs(errors["STM32H7A3"]) < 0.005


def test_macs_per_op_from_the_file(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    model = read_tflite(tiny_bundle / "student_int8.tflite")
    # the file's MACs: the PyTorch model's plus the folded normalization (one MAC per input value)
    pixels = 1 * 8 * 8
    assert model.is_int8 and model.total_macs == manifest["roles"]["student"]["macs"] + pixels
    assert not read_tflite(tiny_bundle / "student_fp32.tflite").is_int8


def test_budget_check_names_the_overrun(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        "bench",
        "--device",
        "mcu",
        "--artifacts",
        str(tiny_bundle),
        "--out",
        str(tmp_path / "o"),
        "--formats",
        "tflite_int8",
    ]
    capsys.readouterr()
    assert main([*args, "--ram-kb", "1", "--flash-kb", "8"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgekd:")]  # the rest is progress
    assert len(err) == 1 and err[0].startswith(
        "edgekd: bench: 1 of 1 rows failed: student/tflite_int8 failed (fit): does not fit the budget:"
    )
    assert (
        "RAM (tensor arena)" in err[0]
        and "> 1 KB by" in err[0]
        and "flash" in err[0]
        and "> 8 KB by" in err[0]
        and " bytes)" in err[0]
    )
    row = json.loads((tmp_path / "o" / "bench.json").read_text())["results"][0]
    # a model that does not fit gets no latency estimate: the row fails with the reason instead
    assert (
        row["status"] == "failed"
        and row["stage"] == "fit"
        and row["unsupported"] is True
        and "est_latency_us" not in row["tflm"]
    )
    assert (
        main([*args, "--ram-kb", "1", "--flash-kb", "8", "--allow-unsupported"]) == 0
    )  # the row still fails, the exit does not
    assert main([*args, "--mcu", "cortex-m4"]) == 0  # a few KB fit an STM32L4R5 (profile defaults)
    report = bench(
        artifacts=tiny_bundle,
        device="mcu",
        mcu="cortex-m0plus-64mhz",
        ram_kb=1,
        formats="tflite_int8",
        out=tmp_path / "p",
    )
    assert not report.passed and "does not fit cortex-m0plus-64mhz: RAM" in report.budget_failures[0]


def test_profile_and_option_errors(tiny_bundle: Path) -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"unknown MCU profile 'cortex-m8'; did you mean 'cortex-m7'\? available: .*cortex-m7-216mhz",
    ):
        bench(artifacts=tiny_bundle, device="mcu", mcu="cortex-m8")
    with pytest.raises(BenchError, match=r"--mcu does not apply to --device cpu \(it is for --device mcu\)"):
        bench(artifacts=tiny_bundle, device="cpu", mcu="cortex-m7")
    with pytest.raises(BenchError, match=r"--ram-kb must be a number above 0 and up to 1048576, got 0"):
        bench(artifacts=tiny_bundle, device="mcu", ram_kb=0)
    # names, as on the command line: an int was a raw TypeError ('int' object is not iterable)
    with pytest.raises(ArgumentError, match=r"^mcu must be a name \(cortex-m0plus-64mhz, .*cortex-m7-280mhz\), got 5$"):
        bench(artifacts=tiny_bundle, device="mcu", mcu=5)
    with pytest.raises(ArgumentError, match=r"^emulate must be a name \(cortex-m33, .*cortex-m7\), got 5$"):
        bench(artifacts=tiny_bundle, device="mcu", emulate=5)
    assert profiles.PROFILES.get("cortex-m7") is profiles.PROFILES.get("cortex-m7-216mhz")
    for name in (
        "cortex-m7-280mhz",
        "cortex-m7-216mhz",
        "cortex-m4-120mhz",
        "cortex-m33-160mhz",
        "cortex-m0plus-64mhz",
        "cortex-m55-160mhz",
    ):
        assert name in profiles.profile_names()


def test_op_without_a_tflm_kernel(tiny_bundle: Path, tmp_path: Path) -> None:
    """FULLY_CONNECTED's opcode rewritten to TOPK_V2, which TFLite Micro has no kernel for."""
    data = bytearray((tiny_bundle / "student_int8.tflite").read_bytes())
    r = _Reader(bytes(data))
    for oc in r.tables(r.u32(0), 1):
        if _OPS[max(r.scalar(oc, 0, "b", 0), r.scalar(oc, 3, "i", 0))] == "FULLY_CONNECTED":
            for index, fmt in ((0, "<b"), (3, "<i")):
                pos = r.field(oc, index)
                if pos is not None:
                    import struct

                    struct.pack_into(fmt, data, pos, _OPS.index("TOPK_V2"))
    bad = tmp_path / "topk_int8.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(BenchError, match="topk_int8.tflite on mcu: .*TFLite Micro has no kernel for TOPK_V2"):
        bench(model=bad, device="mcu", out=tmp_path / "o")  # one file the target cannot run: bad input
    assert not (tmp_path / "o").exists()
    report = bench(model=bad, device="mcu", out=tmp_path / "o", allow_unsupported=True)  # measured anyway
    row = report.results[0]
    assert (
        row["status"] == "failed"
        and row["stage"] == "load"
        and row["tflm"]["ops_supported"] is False
        and row["unsupported"] is True
    )
    assert (
        "TFLite Micro has no kernel for TOPK_V2" in row["reason"]
        and "TOPK_V2" in row["reason"].split("the model's ops:")[1]
    )
    assert "est_latency_us" not in row["tflm"] and report.passed  # no estimate for a model TFLM cannot run


@pytest.mark.parametrize(
    ("damage", "code", "needle"),
    [
        ("labels", 1, "student/tflite_int8 failed (eval): eval labels span 99…99 but the model has 10 classes"),
        ("float", 2, "error: eval data eval.npz is malformed: eval images are float32 of shape"),
        ("size", 2, "error: eval data eval.npz does not match the model input: images are 9×9×1 (H×W×C)"),
    ],
)
def test_eval_data_the_cpu_bench_refuses_the_mcu_bench_refuses_too(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str, code: int, needle: str
) -> None:
    """The MCU bench judges the eval data as the CPU bench does: labels out of range and NaN float
    images gave an 'ok' row there (accuracy 0 % / 10 %), exit 0. Labels out of the model's class
    range fail the row on both (the worker's check_fits: the classes are the model's); NaN float
    images and images of another size than the manifest's model input are refused on both before
    any row runs (they failed every row before): one line, exit 2, no report."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("bench"))
    data = dict(np.load(copy / "eval.npz"))
    if damage == "labels":
        data["labels"] = data["labels"] * 0 + 99
    elif damage == "float":
        data["images"] = data["images"].astype(np.float32) * np.nan
    else:
        data["images"] = np.zeros((len(data["labels"]), 9, 9, 1), np.uint8)
    np.savez(copy / "eval.npz", **data)
    reseal(copy)
    lines = {}
    for device in ("cpu", "mcu"):
        args = ["bench", "--artifacts", str(copy), "--device", device, "--out", str(tmp_path / device)]
        capsys.readouterr()
        assert main([*args, "--formats", "tflite_int8", "--models", "student", "--runs", "2", "--warmup", "0"]) == code
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgekd:")]
        assert len(err) == 1 and needle in err[0], err
        if code == 2:
            assert not (tmp_path / device).exists()
            lines[device] = err[0]
        else:
            row = json.loads((tmp_path / device / "bench.json").read_text())["results"][0]
            assert row["status"] == "failed" and row["stage"] == "eval" and row["accuracy_frac"] is None
            lines[device] = row["reason"]
    assert lines["cpu"] == lines["mcu"]


def test_the_mcu_worker_still_checks_eval_images_per_row(tiny_bundle: Path, tmp_path: Path) -> None:
    """The bench refuses float images up front; the measuring processes keep the same check for eval
    data the bench did not read itself (--full-test's split): the MCU worker's row fails with the
    CPU worker's reason, not an 'ok' row of NaN pixels."""
    from dataclasses import asdict

    from edgekd.benchmark import mcu_worker, worker
    from edgekd.benchmark.targets import Job
    from edgekd.formats import get_format

    data = dict(np.load(tiny_bundle / "eval.npz"))
    data["images"] = data["images"].astype(np.float32) * np.nan
    np.savez(tmp_path / "eval.npz", **data)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    entry = manifest["models"]["student_int8.tflite"]
    fmt = get_format("tflite_int8")
    job = Job(
        "student",
        "tflite_int8",
        str(tiny_bundle / "student_int8.tflite"),
        str(tmp_path / "eval.npz"),
        len(manifest["labels"]),
        1,
        2,
        0,
        entry["input"],
        "classification",
        fmt.runner,
        fmt.io_dtype,
    )
    rows = [mcu_worker.measure(asdict(job)), worker.measure(asdict(job))]
    for row in rows:
        assert row["status"] == "failed" and row["stage"] == "eval", row
    n = len(data["labels"])
    want = f"eval images are float32 of shape [{n}, 8, 8, 1] with {n * 64} NaN or infinite values; edgekd writes "
    assert rows[0]["reason"] == rows[1]["reason"] == want + "uint8 N×H×W×C"


def test_conv_cost_fit_needs_conv_macs() -> None:
    from edgekd.errors import EdgekdError
    from edgekd.tflite_file import TfliteModel

    empty = TfliteModel(Path("no_conv.tflite"), size_bytes=0, ops=[], tensors=[], inputs=[], outputs=[], opcodes=[])
    fit = next(r for r in profiles.MLPERF_TINY_RESNET8 if r.role == "fit")
    with pytest.raises(EdgekdError, match="no_conv.tflite: no CONV_2D MACs"):
        estimate.fit_conv_cycles(empty, fit)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_source_archive_is_one_line(damage: str, tmp_path: Path) -> None:
    import io
    import tarfile

    from edgekd.mcu.sources import ARCHIVES, SourceError, from_archives

    folder = tmp_path / "third_party"
    folder.mkdir()
    for prefix, top in ARCHIVES.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = bytes(range(256)) * 400  # incompressible enough to be cut mid-stream
            info = tarfile.TarInfo(f"{top}/file.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        blob = buf.getvalue()
        damaged = b"not a tar" * 10 if damage == "garbage" else blob[: len(blob) // 3]
        (folder / f"{prefix}-1.tar.gz").write_bytes(damaged)
    with pytest.raises(SourceError, match=r"tar.gz is not a readable archive \(") as info:
        from_archives(folder, tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not [p for p in (tmp_path / "cache" / "src").iterdir()]  # the half-unpacked folder is gone


def test_mcu_build_checks_model_and_sources_before_making_its_folder(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.errors import EdgekdError
    from edgekd.mcu.app import mcu_build

    tools = tmp_path / "tools"  # stand-ins: the checks below come before any tool runs
    tools.mkdir()
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++"):
        (tools / tool).write_text("#!/bin/sh\nexit 1\n")
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    fp32 = tiny_bundle / "student_fp32.tflite"
    int8 = tiny_bundle / "student_int8.tflite"
    for model, tflm, needle in (
        (empty, None, "empty.tflite"),
        (fp32, None, "not a full-integer int8 model"),
        (int8, tmp_path / "nowhere", "--tflm"),
        (int8, tmp_path / "tools", "neither a tflite-micro checkout"),
    ):
        out = tmp_path / "out"
        with pytest.raises(EdgekdError, match=needle):
            mcu_build(model=model, out=out, tflm=tflm)
        assert not out.exists(), needle
