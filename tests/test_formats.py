"""The formats registry: a format added with one registration (here, in this test module alone) is
exported, parity-checked, verified and benched like the built-in ones.

The toy format keeps a tiny test model's weights in ``.npz`` and runs them with numpy: no edgekd
module knows it, so each stage that handles it reads the registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgekd.formats import FORMATS, Format, file_name, format_for_file, get_format, register_format
from edgekd.runtimes.base import Runner, raw_nchw

TOY = "numpy_npz"


def npz_file(job, formats: list[str]) -> None:
    """Exporter: the wrapped PyTorch model's state dict (normalization conv included) as arrays."""
    from edgekd.atomic import write_with

    arrays = {k: v.detach().cpu().numpy() for k, v in job.model.state_dict().items()}
    write_with(job.path(TOY), lambda fh: np.savez(fh, **arrays))


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, groups: int = 1) -> np.ndarray:
    """NCHW convolution, stride 1, 'same' padding, for 1×1 and 3×3 kernels."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # (N, C, H, W, k, k)
    if groups == 1:
        y = np.einsum("nchwij,ocij->nohw", win, w)
    else:  # depthwise
        y = np.einsum("nchwij,cij->nchw", win, w[:, 0])
    return y + (b[None, :, None, None] if b is not None else 0)


def _bn(x: np.ndarray, p: dict[str, np.ndarray], key: str) -> np.ndarray:
    scale = p[f"{key}.weight"] / np.sqrt(p[f"{key}.running_var"] + 1e-5)
    return (x - p[f"{key}.running_mean"][None, :, None, None]) * scale[None, :, None, None] + p[f"{key}.bias"][
        None, :, None, None
    ]


class NpzRunner(Runner):
    """The ``test_student``/``test_teacher`` network (TinyCNN) in numpy."""

    layout = "NCHW"
    runtime = f"numpy {np.__version__}"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        with np.load(path) as data:
            self.p = {k: data[k].astype(np.float32) for k in data.files}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return raw_nchw(image)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        x = _conv(x, p["normalize.weight"], p["normalize.bias"], groups=x.shape[1])
        x = np.maximum(_bn(_conv(x, p["model.features.0.weight"], None), p, "model.features.1"), 0)
        n, c, h, w = x.shape
        x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        x = np.maximum(_bn(_conv(x, p["model.features.4.weight"], None), p, "model.features.5"), 0)
        return x.mean(axis=(2, 3)) @ p["model.fc.weight"].T + p["model.fc.bias"]


@pytest.fixture
def toy_format(monkeypatch: pytest.MonkeyPatch):
    """The one registration. The bench's measuring processes import this module to open the file
    (the runner is named by module), so they get this folder on their path."""
    fmt = register_format(
        Format(
            name=TOY,
            suffix="_weights.npz",
            runtime="numpy",
            exact=True,
            runner="test_formats:NpzRunner",
            exporter="test_formats:npz_file",
            description="test: weights in .npz, run by numpy",
        )
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    yield fmt
    del FORMATS._entries[TOY]  # the rest of the session sees the built-in formats only


def test_a_registered_format_goes_through_export_verify_and_bench(
    toy_format: Format, run_dir: Path, tmp_path: Path
) -> None:
    from edgekd.benchmark import bench
    from edgekd.bundle import verify_bundle
    from edgekd.exporters.export import export

    bundle = tmp_path / "bundle"
    manifest = export(run=run_dir, out=bundle, set=[f"export.formats=[pytorch,{TOY}]", "export.models=[student]"])
    name = file_name("student", TOY)
    assert name == "student_weights.npz" and (bundle / name).is_file()
    assert manifest["models"][name]["format"] == TOY
    metrics = manifest["metrics"][name]
    # an exact format: the numpy forward reproduces PyTorch within the fp32 bound, on every test image
    assert metrics["ok"] and metrics["max_abs_diff"] <= 2e-3 and metrics["top1_agreement"] == 1.0
    assert manifest["roles"]["student"]["files"] == ["student.pt", name]
    assert verify_bundle(bundle).passed

    report = bench(artifacts=bundle, threads=1, runs=3, warmup=1, formats=TOY, out=tmp_path / "bench")
    (row,) = report.results
    assert row["status"] == "ok", row["reason"]
    assert row["format"] == TOY and row["runtime"].startswith("numpy")
    assert abs(row["accuracy_frac"] - metrics["test_acc"]) <= 0.05  # eval.npz is a sample of the test split


def test_unknown_export_format_suggests_the_registered_ones(run_dir: Path, tmp_path: Path) -> None:
    from edgekd.errors import ConfigError
    from edgekd.exporters.export import export

    with pytest.raises(ConfigError, match="unknown export format 'tflite_int9'; did you mean 'tflite_int8'"):
        export(run=run_dir, out=tmp_path / "b", set=["export.formats=[tflite_int9]"])
    with pytest.raises(ConfigError, match="c_array is made from tflite_int8"):
        export(run=run_dir, out=tmp_path / "b", set=["export.formats=[pytorch,c_array]"])
    assert not (tmp_path / "b").exists()


def test_builtin_formats() -> None:
    assert [file_name("student", f) for f in ("pytorch", "onnx", "tflite_fp32", "tflite_int8")] == [
        "student.pt",
        "student.onnx",
        "student_fp32.tflite",
        "student_int8.tflite",
    ]
    assert get_format("tflite_fp32").exact and not get_format("tflite_int8").exact
    assert get_format("tflite_int8").integer_io and not get_format("tflite_dynamic").integer_io
    assert not get_format("c_array").is_model and get_format("c_array").source == "tflite_int8"
    assert format_for_file("teacher_fp16.tflite").name == "tflite_fp16"
    assert format_for_file("student_int16x8.tflite").name == "tflite_int16x8"
    assert get_format("tflite_int16x8").quantized and not get_format("tflite_int16x8").integer_io  # int16 I/O
    # what bench checks each bundle file's input and output tensors against
    assert [get_format(f).io_dtype for f in ("tflite_fp32", "tflite_fp16", "tflite_dynamic")] == ["float32"] * 3
    assert get_format("tflite_int8").io_dtype == "int8" and get_format("tflite_int16x8").io_dtype == "int16"
    assert format_for_file("resnet8_quant.tflite").runtime == "litert"  # a lone model named otherwise
    assert format_for_file("notes.txt") is None
