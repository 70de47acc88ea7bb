"""The microcontroller app built against TFLite Micro + CMSIS-NN and run on QEMU Cortex-M boards:
source selection, linker-map sizes, the emulator log parser, the host reference, the missing-tool
message (fast, no toolchain needed); the tiny bundle built and run on the emulated Cortex-M4 when
the toolchain is installed and the library is cached; digits on M4 and M7 and the MLPerf Tiny
ResNet-8 calibration under `make test-mcu` (slow: a cold library build takes minutes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, eval_data, file_tree, reseal, with_eval_arrays
from edgekd.cli import main
from edgekd.data.cache import cache_root
from edgekd.mcu import app, build, codegen, emulate, hostref, sources, toolchain

# the user's cache, read before the suite's autouse fixture isolates EDGEKD_CACHE: the TFLM
# library objects are worth keeping between sessions (minutes to compile, seconds to reuse)
USER_CACHE = cache_root()
RESNET8 = SHARED_DATA / "mlperf-tiny" / "resnet8_quant.tflite"
needs_tools = pytest.mark.skipif(
    not toolchain.available(), reason=f"Arm toolchain / QEMU not installed (apt-get install {toolchain.APT_PACKAGES})"
)
needs_sources = pytest.mark.skipif(
    sources.default_third_party() is None, reason="no TFLM sources (../shared/third_party or $EDGEKD_THIRD_PARTY)"
)


def fake_tree(root: Path) -> sources.SourceTree:
    """A TFLM-shaped folder with a few kernels: enough for the source selection logic."""
    k = root / "tflm/tensorflow/lite/micro/kernels"
    (k / "cmsis_nn").mkdir(parents=True)
    (k / "conv.cc").write_text(
        '#include "tensorflow/lite/micro/kernels/conv.h"\nTFLMRegistration Register_CONV_2D() {}\n'
    )
    (k / "cmsis_nn/conv.cc").write_text(
        '#include "tensorflow/lite/micro/kernels/conv.h"\n#include '
        '"tensorflow/lite/micro/kernels/kernel_util.h"\nTFLMRegistration Register_CONV_2D() {}\nTFLMRegistration '
        "Register_CONV_2D_INT8() {}\n"
    )
    (k / "conv_common.cc").write_text('#include "tensorflow/lite/micro/kernels/padding.h"\n')
    (k / "kernel_util.cc").write_text("")
    (k / "reshape.cc").write_text(
        '#include "tensorflow/lite/micro/kernels/reshape.h"\nTFLMRegistration Register_RESHAPE() {}\n'
    )
    (k / "reshape_common.cc").write_text("")
    (k / "pooling.cc").write_text(
        "TFLMRegistration Register_AVERAGE_POOL_2D() {}\nTFLMRegistration Register_MAX_POOL_2D() {}\n"
    )
    (k / "pooling_test.cc").write_text("TFLMRegistration Register_TOPK_V2() {}\n")
    nn = root / "cmsis_nn/Source/ConvolutionFunctions"
    nn.mkdir(parents=True)
    (nn / "arm_convolve_s8.c").write_text(
        "static int helper(int a);\narm_cmsis_nn_status arm_convolve_s8(const cmsis_nn_context *ctx,\n    int "
        "x)\n{\n}\n"
    )
    (nn / "arm_convolve_get_buffer_sizes_s8.c").write_text(
        "int32_t arm_convolve_s8_get_buffer_size(const cmsis_nn_dims *d)\n{\n}\nint32_t "
        "arm_convolve_wrapper_s8_get_buffer_size(int);\n"
    )
    return sources.SourceTree(
        root / "tflm", root / "cmsis_nn", root / "cmsis", root / "fb", root / "gl", root / "ruy", "id", "fake"
    )


def test_kernel_selection(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    k = tree.tflm / "tensorflow/lite/micro/kernels"
    table = build.kernel_table(tree)
    assert (
        table["CONV_2D"] == k / "cmsis_nn/conv.cc"
        and table["MAX_POOL_2D"] == k / "pooling.cc"
        and "TOPK_V2" not in table
    )  # tests ignored
    files = build.kernel_sources(tree, ["CONV_2D", "RESHAPE"])
    # the CMSIS-NN conv with its included helpers; the reference conv.cc registers an op: left out
    assert set(files) == {
        k / "cmsis_nn/conv.cc",
        k / "conv_common.cc",
        k / "kernel_util.cc",
        k / "reshape.cc",
        k / "reshape_common.cc",
    }
    assert k / "pooling.cc" in build.kernel_sources(tree, [], "all")
    with pytest.raises(build.BuildError, match="has no kernel for TOPK_V2"):
        build.kernel_sources(tree, ["CONV_2D", "TOPK_V2"])
    index = build.cmsis_nn_index(tree)
    assert index["arm_convolve_s8"].name == "arm_convolve_s8.c"
    assert index["arm_convolve_s8_get_buffer_size"].name == "arm_convolve_get_buffer_sizes_s8.c"  # name ≠ file name
    assert "helper" not in index and "arm_convolve_wrapper_s8_get_buffer_size" not in index  # declarations only


MAP = """Memory Configuration
Name             Origin             Length             Attributes
FLASH            0x00000000         0x00400000         xr
Linker script and memory map
.text           0x00000000    0x1a2b0
 *(.vectors)
.rodata         0x0001a2b0     0x5000
.ARM.exidx      0x0001f2b0        0x8
.data           0x20000000      0x100 load address 0x0001f2b8
.bss            0x20000100     0x3000
.profiler       0x20003100    0x14008
"""


def test_sizes_from_the_linker_map() -> None:
    sizes = build.parse_map(MAP)
    assert sizes.flash_bytes == 0x1A2B0 + 0x5000 + 0x8 + 0x100  # text + rodata + exidx + data's initial values
    assert sizes.ram_bytes == 0x100 + 0x3000 and sizes.profiler_bytes == 0x14008  # profiler kept out of RAM
    with pytest.raises(build.BuildError, match="no .text/.bss"):
        build.parse_map("Linker script and memory map\n")


LOG = """edgekd: profile 0
"Event","Tag","Ticks"
0,CONV_2D,1000
1,CONV_2D,3000
2,FULLY_CONNECTED,500
3,SOFTMAX,500
edgekd: invoke 0 ticks 5100
edgekd: output 0 0: -128,5,127
edgekd: sample 0: class 2 (label 2), 0 of 3 output values differ from the host's: ok
edgekd: profile 1
"Event","Tag","Ticks"
0,CONV_2D,1000
1,CONV_2D,3000
2,FULLY_CONNECTED,700
3,SOFTMAX,300
edgekd: invoke 1 ticks 5200
edgekd: output 1 0: 1,2,3
edgekd: sample 1: class 2 (label 0), 1 of 3 output values differ from the host's: MISMATCH
edgekd: arena used 4096 of 8192 bytes
edgekd: 1 of 2 samples ok
"""


def test_emulator_log_parsing() -> None:
    res = emulate.parse(LOG.replace("\n", "\r\n"), "cortex-m4", "mps2-an386", 2, 1.0)  # MicroPrintf's line ends
    assert (
        res.outputs == {0: [-128, 5, 127], 1: [1, 2, 3]}
        and res.app_ok == {0: True, 1: False}
        and res.arena_used == 4096
    )
    d = res.as_dict()
    assert d["instructions"] == 5150 and (d["instructions_min"], d["instructions_max"]) == (5100, 5200)
    top = d["per_op"][0]
    assert (
        top["op"] == "CONV_2D"
        and top["instructions"] == 4000
        and top["count"] == 2
        and top["share"] == pytest.approx(0.8)
    )
    assert app.compare([[-128, 5, 127], [1, 2, 4]], res.outputs) == [
        "sample 1: 1 of 3 values differ (first: [2] device 3, host 4)"
    ]
    assert app.compare([[0], [0], [0]], {0: [0], 1: [0]}) == ["sample 2: no output printed"]


def test_host_quantization_matches_the_app() -> None:
    """main.cc rounds half away from zero in float32; numpy's round would give 2 for 2.5."""
    q = hostref.quantize_like_app(np.array([5, 3, 0, 255], np.uint8), 2.0, -1)  # 2.5-1, 1.5-1, -1, 126.5
    assert q.tolist() == [2, 1, -1, 127]
    assert hostref.quantize_like_app(np.array([0], np.uint8), 1.0, -128).dtype == np.int8


def test_config_header_embeds_samples_and_host_outputs(tiny_bundle: Path, tmp_path: Path) -> None:
    model = tiny_bundle / "student_int8.tflite"
    with np.load(tiny_bundle / "eval.npz") as data:
        images, labels = data["images"], data["labels"]
    samples, arena = hostref.pick_samples(model, images, labels, 3)
    ref = hostref.reference(model, images[:24])
    right = [i for i in range(24) if ref["classes"][i] == labels[i]]
    assert len(samples) == 3 and arena > 0
    assert [s.label for s in samples] == [int(labels[i]) for i in right[:3]]  # correctly classified ones first
    assert samples[0].expected == ref["outputs"][right[0]].tolist()
    text = codegen.write_app_config(model, {"arena_bytes": arena}, tmp_path, samples).read_text()
    assert (
        "kEdgekdNumSamples = 3;" in text and "kEdgekdHasExpected = true;" in text and "kEdgekdExpectedOutputs" in text
    )
    assert f"kEdgekdSampleLabels[kEdgekdNumSamples] = {{{', '.join(str(s.label) for s in samples)}}};" in text


def test_missing_toolchain_is_one_line(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    capsys.readouterr()
    assert (
        main(["mcu", "build", "--artifacts", str(tiny_bundle), "--core", "cortex-m4", "--out", str(tmp_path / "b")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "edgekd: error: arm-none-eabi-gcc is not installed; install the Arm toolchain and emulator: apt-get install "
        f"{toolchain.APT_PACKAGES}"
    ]
    assert (
        main(
            [
                "bench",
                "--device",
                "mcu",
                "--emulate",
                "cortex-m4",
                "--artifacts",
                str(tiny_bundle),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgekd: error: arm-none-eabi-gcc is not installed")
    assert not (tmp_path / "b").exists() and not (tmp_path / "r").exists()


def test_bad_input(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    cases = [
        (
            ["--artifacts", str(tiny_bundle), "--core", "cortex-m8"],
            "unknown emulated Cortex-M core 'cortex-m8'; did you mean",
        ),
        (["--artifacts", str(tiny_bundle), "--out", str(tmp_path / "mine")], "a folder edgekd did not make"),
        (["--model", str(tmp_path / "none.tflite"), "--out", str(tmp_path / "o")], "no such file"),
        (["--model", str(tmp_path / "mine"), "--out", str(tmp_path / "o")], "mine is a folder, not a regular file"),
        (
            ["--artifacts", str(tiny_bundle), "--model", str(tiny_bundle / "student_int8.tflite")],
            "exactly one of --model FILE or --artifacts DIR",
        ),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["mcu", "build", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and len(list((tmp_path / "mine").iterdir())) == 1
    with pytest.raises(sources.SourceError, match="neither a tflite-micro checkout"):
        sources.resolve(tmp_path / "mine", tmp_path / "cache")


def test_mcu_build_refuses_malformed_eval_data_before_anything_is_made(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`edgekd mcu build --artifacts` read eval.npz its own way, after making its folder: float
    images went on to the host reference, a truncated file or one without labels was a traceback.
    Now it is bench's check: one line, exit 2, before the toolchain is looked for (none here) and
    before --out is made; the bundle is left as it was."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no Arm tools: the data is judged first
    images = eval_data(tiny_bundle)["images"]
    n = len(images)
    bundles = {
        "float": with_eval_arrays(tiny_bundle, tmp_path / "float", images=images.astype(np.float32) / 255),
        "count": with_eval_arrays(tiny_bundle, tmp_path / "count", images=images[:-1]),
        "3d": with_eval_arrays(tiny_bundle, tmp_path / "3d", images=images[..., 0]),
    }
    truncated = tmp_path / "truncated"
    bundles["truncated"] = with_eval_arrays(tiny_bundle, truncated)
    (truncated / "eval.npz").write_bytes((truncated / "eval.npz").read_bytes()[:200])
    reseal(truncated)
    bundles["truncated"] = file_tree(truncated)
    cases = {
        "float": f"eval data eval.npz is malformed: eval images are float32 of shape [{n}, 8, 8, 1]; edgekd writes",
        "count": f"eval data eval.npz is malformed: {n - 1} eval images but {n} labels (one per image)",
        "3d": f"eval data eval.npz is malformed: eval images have shape [{n}, 8, 8]",
        "truncated": "cannot read eval data eval.npz: BadZipFile",
    }
    for name, message in cases.items():
        capsys.readouterr()
        out = tmp_path / f"out-{name}"
        assert main(["mcu", "build", "--artifacts", str(tmp_path / name), "--out", str(out)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edgekd: error: ") and message in err[0], (name, err)
        assert not out.exists() and file_tree(tmp_path / name) == bundles[name]


def _library_cached(core: str) -> bool:
    """Is the TFLM core library for ``core`` in the user's cache (so a build takes seconds)?"""
    folder = USER_CACHE / "mcu" / "obj" / core
    return (
        folder.is_dir() and len(list(folder.glob("micro_interpreter-*.o"))) > 0 and len(list(folder.glob("*.o"))) > 40
    )


def _build_and_run(bundle: Path, core: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("EDGEKD_CACHE", str(USER_CACHE))
    out = tmp_path / f"build-{core}"
    assert main(["mcu", "build", "--artifacts", str(bundle), "--core", core, "--out", str(out), "--run"]) == 0
    return json.loads((out / "build.json").read_text())


@needs_tools
@needs_sources
def test_tiny_bundle_on_emulated_m4(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast run of the `make test-mcu` path: build, QEMU, bit-exact outputs, per-op counts."""
    if not _library_cached("cortex-m4"):
        pytest.skip("the TFLM library for cortex-m4 is not cached yet: `make test-mcu` builds it once (minutes)")
    info = _build_and_run(tiny_bundle, "cortex-m4", tmp_path, monkeypatch)
    _check_run(info, tiny_bundle, from_cache=True)


def _check_run(info: dict, bundle: Path, from_cache: bool) -> None:
    emu = info["emulated"]
    assert (
        info["bit_exact"]
        and info["app_self_check"]
        and emu["exit_code"] == 0
        and emu["samples"] == len(info["expected"]) >= 4
    )
    if from_cache:  # the library came from the cache (a new op: a file or two)
        assert info["compiled"] <= 5 and info["cached"] > 40
    else:  # the first build on this machine compiles the library and leaves it in the cache
        assert info["compiled"] + info["cached"] > 40 and _library_cached(info["core"])
    ops = {r["op"] for r in emu["per_op"]}
    assert ops == set(info["ops"]) and abs(sum(r["share"] for r in emu["per_op"]) - 1) < 1e-3
    # the profiled ops account for the whole invoke but a little interpreter glue
    assert 0.8 * emu["instructions"] <= sum(r["instructions"] for r in emu["per_op"]) <= emu["instructions"]
    model_bytes = (bundle / "student_int8.tflite").stat().st_size
    assert info["flash_bytes"] > model_bytes + 20_000 and info["ram_bytes"] >= info["arena_host_bytes"] // 2
    assert (
        emu["arena_used_bytes"] <= info["arena_host_bytes"] + 4096
    )  # a 32-bit core needs about what the host measured


@pytest.mark.slow
@needs_tools
@needs_sources
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7"])
def test_digits_on_emulated_cores(
    core: str, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make test-mcu`: builds the library on first use (cached in ~/.cache/edgekd/mcu), then the
    app for the digits bundle, and checks it on the core's QEMU board."""
    from_cache = _library_cached(core)
    info = _build_and_run(tiny_bundle, core, tmp_path, monkeypatch)
    _check_run(info, tiny_bundle, from_cache)
    # and the bench path: the same build through `bench --device mcu --emulate`
    report = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--device",
                "mcu",
                "--emulate",
                core,
                "--artifacts",
                str(tiny_bundle),
                "--formats",
                "tflite_int8",
                "--out",
                str(tmp_path / "r"),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    rows = json.loads(report.read_text())["results"]
    emu = next(r for r in rows if r["model"] == "student")["tflm"]["emulated"]
    assert emu["bit_exact"] and emu["emulated"]["instructions"] == info["emulated"]["instructions"]


@pytest.mark.slow
@needs_tools
@needs_sources
@pytest.mark.skipif(not RESNET8.is_file(), reason=f"{RESNET8} is not there (shared data)")
def test_resnet8_calibration_on_emulated_m4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instruction count the Cortex-M4 CPI factor is calibrated with (edgekd.mcu.cpi) is what
    the build gives today (within 2 %: the samples are random images)."""
    from edgekd.mcu import cpi

    monkeypatch.setenv("EDGEKD_CACHE", str(USER_CACHE))
    info = app.mcu_build(model=RESNET8, core="cortex-m4", out=tmp_path / "r8", run=True)
    assert info["bit_exact"], info["problems"]
    assert info["emulated"]["instructions"] == pytest.approx(cpi.RESNET8_INSTRUCTIONS_M4, rel=0.02)
    assert os.path.getsize(info["elf"]) > 0


def test_cpi_estimate_is_calibrated_on_the_published_m4_figure() -> None:
    from edgekd.mcu import cpi

    assert cpi.ms_from_instructions(cpi.RESNET8_INSTRUCTIONS_M4, "cortex-m4", cpi.PUBLISHED_M4_MHZ) == pytest.approx(
        389.55
    )
    f = cpi.factors()
    assert (
        f["cortex-m7"].cpi < f["cortex-m33"].cpi < f["cortex-m4"].cpi
    )  # dual issue, then single issue with a better pipeline
    assert f["cortex-m4"].basis.startswith("calibrated") and all(
        "unchecked" in f[c].basis for c in ("cortex-m7", "cortex-m33", "cortex-m55")
    )
