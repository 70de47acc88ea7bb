"""``edgekd predict`` and the Predictor: agreement with bench's int8 evaluation on every eval image
of the digits bundle (as PNG files and as arrays), preprocessing from the bundle (resize, channels),
the JSON, errors, and the same on the torch-free Raspberry Pi path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bench import _blocking_sitecustomize

from conftest import REPO
from edgekd.benchmark import bench
from edgekd.cli import main
from edgekd.predict import PredictError, Predictor, expand_images
from edgekd.runtimes.tflite_runner import TFLiteRunner


def _eval(bundle: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with np.load(bundle / "eval.npz") as data:
        return data["images"], data["labels"], [str(c) for c in data["classes"]]


@pytest.fixture(scope="module")
def eval_pngs(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every eval image as a PNG (lossless: the same pixels bench evaluates)."""
    from PIL import Image

    images, _, _ = _eval(tiny_bundle)
    folder = tmp_path_factory.mktemp("eval-png")
    for i, img in enumerate(images):
        Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(folder / f"{i:04d}.png")
    return folder


def _bench_int8(bundle: Path) -> tuple[np.ndarray, float]:
    """(top-1 of every eval image, accuracy) as bench's int8 row computes them."""
    images, labels, _ = _eval(bundle)
    pred = TFLiteRunner(bundle / "student_int8.tflite", threads=1).predict(images).argmax(1)
    return pred, float((pred == labels).mean())


def test_cli_agrees_with_bench_int8_on_every_eval_image(
    tiny_bundle: Path, eval_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels, classes = _eval(tiny_bundle)
    expected, acc = _bench_int8(tiny_bundle)
    row = bench(
        artifacts=tiny_bundle, formats="tflite_int8", models="student", runs=1, warmup=0, threads=1, out=tmp_path / "b"
    ).results[0]
    assert row["accuracy_frac"] == acc and row["accuracy_images"] == len(images)  # the worker's evaluation is this one
    out = tmp_path / "p.json"
    assert main(["predict", "--artifacts", str(tiny_bundle), str(eval_pngs), "--top-k", "3", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "student_int8.tflite: top-3" in table and "0000.png" in table
    data = json.loads(out.read_text())
    assert data["file"] == "student_int8.tflite" and data["task"] == "classification" and data["failed"] == []
    preds = data["predictions"]
    assert len(preds) == len(images) and [Path(p["source"]).name for p in preds] == [
        f"{i:04d}.png" for i in range(len(images))
    ]
    got = np.array([classes.index(p["label"]) for p in preds])
    assert (got == expected).all(), (
        f"{int((got != expected).sum())} of {len(got)} images differ from bench's int8 evaluation"
    )
    assert float((got == labels).mean()) == row["accuracy_frac"]
    for p in preds:
        scores = [t["score"] for t in p["top"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6


def test_predictor_on_arrays_pil_images_and_other_sizes(tiny_bundle: Path) -> None:
    from PIL import Image

    images, _, classes = _eval(tiny_bundle)
    expected, _ = _bench_int8(tiny_bundle)
    p = Predictor(tiny_bundle)
    h, w, c = images.shape[1:]
    assert (p.height, p.width, p.channels, p.file, p.labels) == (h, w, c, "student_int8.tflite", classes)
    # arrays of the model's size go in untouched: bit-identical logits to the bench runner
    assert np.array_equal(
        p.logits(images), TFLiteRunner(tiny_bundle / "student_int8.tflite", threads=1).predict(images)
    )
    assert [classes.index(p.predict(img).label) for img in images] == list(expected)
    assert [classes.index(p.predict(img[..., 0]).label) for img in images[:5]] == list(expected[:5])  # H×W gray
    # a PIL image, an RGB copy and a 4× larger copy are converted and resized as training decoded them
    gray = Image.fromarray(images[0][..., 0])
    assert np.array_equal(p.preprocess(gray), images[0]) and np.array_equal(
        p.preprocess(gray.convert("RGB")), images[0]
    )
    big = p.preprocess(np.asarray(gray.resize((4 * w, 4 * h), Image.Resampling.NEAREST).convert("RGB")))
    assert big.shape == (h, w, c) and big.dtype == np.uint8
    with pytest.raises(PredictError, match="uint8 pixel values"):
        p.predict(images[0].astype(np.float32))
    with pytest.raises(PredictError, match="H×W or H×W×C"):
        p.predict(np.zeros((2, 3, 4, 5), np.uint8))


def test_predict_errors(tiny_bundle: Path, eval_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["predict", "--artifacts", str(tiny_bundle), str(eval_pngs / "0000.png"), "--format", "tflite_fp16"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("edgekd: error: this bundle has no tflite_fp16 file for the student; its formats:")
        and len(err.splitlines()) == 1
    )
    assert main(["predict", "--artifacts", str(tiny_bundle), str(tmp_path / "nope.png")]) == 2
    assert f"image {tmp_path / 'nope.png'}: no such file" in capsys.readouterr().err
    assert main(["predict", "--artifacts", str(tiny_bundle), str(eval_pngs / "0000.png"), "--top-k", "0"]) == 2
    capsys.readouterr()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert (
        main(["predict", "--artifacts", str(tiny_bundle), str(eval_pngs / "0001.png"), str(broken)]) == 1
    )  # the other image still runs
    captured = capsys.readouterr()
    assert "0001.png" in captured.out and "FAILED" in captured.err and "broken.png: cannot read image" in captured.err
    # no image readable at all: one error line, no empty table
    broken.with_suffix(".gif").write_text("text, not an image\n")
    assert main(["predict", "--artifacts", str(tiny_bundle), str(broken), str(broken.with_suffix(".gif"))]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("edgekd: error: no image could be read: ")
    assert len(captured.err.splitlines()) == 1 and "cannot read image " in captured.err
    assert "broken.png: cannot identify" in captured.err and captured.err.rstrip().endswith("(and 1 more)")
    # globs and folders expand to sorted files, each once
    assert expand_images([str(eval_pngs / "000[0-2].png"), str(eval_pngs / "0001.png")]) == [
        eval_pngs / f"000{i}.png" for i in range(3)
    ]
    with pytest.raises(PredictError, match="no file matches"):
        expand_images([str(tmp_path / "*.jpg")])
    # a folder with a link that leads nowhere: one line naming it, not an image quietly left out
    shutil.copytree(eval_pngs, tmp_path / "linked")
    (tmp_path / "linked" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(PredictError, match=r"linked/gone\.png is a link that leads nowhere"):
        expand_images([str(tmp_path / "linked")])


def test_huge_and_float_images_are_named_and_the_others_run(
    tiny_bundle: Path, eval_pngs: Path, huge_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A 200-Mpixel PNG (Pillow's DecompressionBombError) and a float TIFF fail alone: exit 1."""
    from PIL import Image

    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(tmp_path / "nan.tif")
    argv = ["predict", "--artifacts", str(tiny_bundle), str(huge_png), str(tmp_path / "nan.tif")]
    assert main([*argv, str(eval_pngs / "0001.png")]) == 1
    captured = capsys.readouterr()
    assert "0001.png" in captured.out and "Traceback" not in captured.err
    assert captured.err.splitlines() == [
        f"edgekd: predict: FAILED {huge_png}: cannot read image {huge_png}: too large (200000000 pixels; edgekd "
        "reads images of up to 67108864 pixels)",
        f"edgekd: predict: FAILED {tmp_path / 'nan.tif'}: cannot read image {tmp_path / 'nan.tif'}: floating-point "
        "pixels (mode F) have no fixed range; save it as an 8- or 16-bit image",
    ]
    with pytest.raises(PredictError, match="floating-point pixels"):  # a PIL image given directly, too
        Predictor(tiny_bundle).predict(Image.open(tmp_path / "nan.tif"))


@pytest.mark.parametrize("size", [8, 16])
def test_16_bit_image_reads_as_training_decoded_it(tiny_bundle: Path, tmp_path: Path, size: int) -> None:
    """The same 16-bit PNG gives the same uint8 array in predict as in training (top byte, not
    Pillow's clip to 0/255), at the model's size and resized to it."""
    from PIL import Image

    from edgekd.data.imagefolder import decode_images

    p = Predictor(tiny_bundle)
    assert (p.height, p.width, p.channels) == (8, 8, 1)
    values = (np.arange(size * size).reshape(size, size) * (65535 // (size * size))).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    trained = decode_images([tmp_path / "g16.png"], 8)[0].transpose(1, 2, 0)
    assert np.array_equal(p.preprocess(tmp_path / "g16.png"), trained)
    assert len(np.unique(trained)) > 2  # not binarised
    if size == 8:
        assert np.array_equal(trained[..., 0], values >> 8)


def test_teacher_and_fp32_formats(tiny_bundle: Path, eval_pngs: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    assert (
        main(
            [
                "predict",
                "--artifacts",
                str(tiny_bundle),
                str(eval_pngs / "0000.png"),
                "--model",
                "teacher",
                "--format",
                "tflite_fp32",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["file"] == "teacher_fp32.tflite"


PI_APP = """
import sys, numpy as np
from edgekd.predict import Predictor
bundle = sys.argv[1]
p = Predictor(bundle, threads=1)
with np.load(bundle + "/eval.npz") as d:
    images = d["images"]
print(" ".join(str(p.labels.index(p.predict(img).label)) for img in images))
"""


def test_torch_free_pi_path(tiny_bundle: Path, eval_pngs: Path, tmp_path: Path) -> None:
    """The Raspberry Pi install (numpy + ai-edge-litert + Pillow): torch, TensorFlow, ONNX Runtime,
    PyYAML and rich unimportable; the CLI on PNG files and the Predictor on arrays agree with bench."""
    blocked = ["torch", "torchvision", "tensorflow", "onnxruntime", "onnx", "matplotlib", "rich", "yaml"]
    env = {**__import__("os").environ, "PYTHONPATH": _blocking_sitecustomize(tmp_path / "shim", blocked)}
    expected, _ = _bench_int8(tiny_bundle)
    _, _, classes = _eval(tiny_bundle)
    out = tmp_path / "pi.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekd",
            "predict",
            "--artifacts",
            str(tiny_bundle),
            str(eval_pngs),
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    got = [classes.index(p["label"]) for p in json.loads(out.read_text())["predictions"]]
    assert got == list(expected)
    proc = subprocess.run(
        [sys.executable, "-c", PI_APP, str(tiny_bundle)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert [int(v) for v in proc.stdout.split()] == list(expected)


def test_deploy_example_app(tiny_bundle: Path, eval_pngs: Path, tmp_path: Path) -> None:
    """deploy/rpi/classify.py, the example app, on a folder of images (torch-free)."""
    env = {
        **__import__("os").environ,
        "PYTHONPATH": _blocking_sitecustomize(tmp_path / "shim", ["torch", "tensorflow", "onnxruntime"]),
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "rpi" / "classify.py"), str(tiny_bundle), str(eval_pngs)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    expected, _ = _bench_int8(tiny_bundle)
    _, _, classes = _eval(tiny_bundle)
    lines = [line for line in proc.stdout.splitlines() if line.endswith(".png") or ".png" in line]
    assert len(lines) == len(expected)
    assert [line.split()[1] for line in lines] == [classes[i] for i in expected]


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"), reason="needs /dev/zero and FIFOs")
def test_special_files_are_named_as_such(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A device or a FIFO given as an image exists: it is said what it is, not 'not found'; the
    Predictor refuses it before reading (a FIFO would wait for a writer, /dev/zero never ends)."""
    zero, fifo = tmp_path / "zero.png", tmp_path / "fifo.png"
    zero.symlink_to("/dev/zero")
    os.mkfifo(fifo)
    for path, kind in ((zero, "a character device"), (fifo, "a FIFO (named pipe)")):
        assert main(["predict", "--artifacts", str(tiny_bundle), str(path)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"edgekd: error: image {path} is {kind}, not a regular file"], err
        with pytest.raises(PredictError, match=f"is {re.escape(kind)}, not a regular file"):
            Predictor(tiny_bundle).predict(path)


def test_predict_call_arguments_are_one_line(tiny_bundle: Path, eval_pngs: Path, tmp_path: Path) -> None:
    """``predict()`` is the CLI verb: a list of paths. Anything else is one PredictError (or
    ArgumentError) line: a TypeError from os.fspath or iteration before, and a lone str was
    iterated character by character ('image not found: /')."""
    from edgekd.errors import ArgumentError
    from edgekd.predict import predict

    png = str(eval_pngs / "0000.png")
    cases = [
        ({"images": [5]}, PredictError, r"give image paths .*got int 5; for arrays or PIL images use Predictor"),
        ({"images": [np.zeros((8, 8), np.uint8)]}, PredictError, r"got ndarray shape \[8, 8\]; for arrays"),
        ({"images": None}, PredictError, r"give a list of image paths .*got None$"),
        ({"images": png}, PredictError, r"give a list of image paths .*got one str$"),
        ({"images": Path(png)}, PredictError, r"got one PosixPath$"),
        ({"images": [b"a.png"]}, PredictError, r"got bytes b'a.png'$"),
        ({"images": [png], "json": 5}, ArgumentError, r"json must be a path .*got int 5"),
        ({"images": [png], "masks": {}}, ArgumentError, r"masks must be a path .*got dict"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            predict(tiny_bundle, **kwargs)
    report = predict(tiny_bundle, images=[Path(png)], json=tmp_path / "p.json")  # Path items and json work
    assert len(report.predictions) == 1 and json.loads((tmp_path / "p.json").read_text())["predictions"]


def test_masks_on_a_classification_bundle_is_refused(
    tiny_bundle: Path, eval_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--masks was silently ignored on a classification bundle: refused, as bench refuses a flag
    of another device, and nothing is written; --top-k above the class count shows every class."""
    png = str(eval_pngs / "0000.png")
    assert main(["predict", "--artifacts", str(tiny_bundle), png, "--masks", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"edgekd: error: --masks applies to segmentation bundles only; {tiny_bundle} is a classification bundle"
    ], err
    assert not (tmp_path / "m").exists()
    classes = len(json.loads((tiny_bundle / "manifest.json").read_text())["labels"])
    assert main(["predict", "--artifacts", str(tiny_bundle), png, "--top-k", str(classes + 1)]) == 0
    assert f"top-{classes}" in capsys.readouterr().out
