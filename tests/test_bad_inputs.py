"""The bad-input matrix: every verb given inputs a careless user or an attacker would give.

Each case runs the CLI in this process (``edgekd.cli.main``) in a fresh workspace holding a copy
of a tiny finished run (``run/``) and its bundle (``bundle/``), a user's folder (``user/``), a
plain file (``file.txt``) and a folder standing for the world outside (``outside/``). Each asserts:
the exit code; exactly one ``edgekd: error:`` line (or, for exit 1, the documented failure
summary); no traceback; every file that was there before is byte-identical after (the whole tree
is hashed, symlinks by target, nothing followed); nothing new except in the case's output folder;
no temporary files left, in the workspace or in the temp folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import make_imagefolder, reseal, tiny_overrides

# a module that writes MARKER when imported or called: planted into files as `markermod:make`
MARKER_MODULE = """
import os
from pathlib import Path
Path(os.environ["EDGEKD_TEST_MARKER"]).write_text("code from a file ran")

def make(*args, **kwargs):
    Path(os.environ["EDGEKD_TEST_MARKER"]).write_text("code from a file ran")
    import torch
    return torch.nn.Linear(1, 1)
"""

# a stand-in for ssh/scp/rsync on PATH: FAKE_SSH=hang waits on a child that sleeps (both pids
# recorded: the whole group must be stopped), anything else fails like an unreachable host
FAKE_SSH = """#!/bin/sh
if [ "$FAKE_SSH" = hang ]; then
  sleep 600 &
  echo $$ $! >> "$FAKE_SSH_PIDS"
  wait
  exit 0
fi
echo "ssh: connect to host $2 port 22: Connection refused" >&2
exit 255
"""

TINY = [x for kv in tiny_overrides() for x in ("--set", kv)]


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # workspace → argv (may change the workspace first)
    code: int = 2
    needle: str = ""  # in the error line (or the failure summary)
    new: str | None = None  # the one folder (relative) where new files may appear (exit 1 cases)
    slow: bool = False
    xfail: str | None = None
    marks: list = field(default_factory=list)


# ---------------------------------------------------------------- workspace helpers


def edit_manifest(ws: Path, change: Callable[[dict], None], bundle: str = "bundle") -> None:
    path = ws / bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def add_file_entry(name: str) -> Callable[[dict], None]:
    return lambda m: m["files"].__setitem__(name, {"sha256": "0" * 64, "bytes": 1})


def rename_entry(old: str, new: str) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        m["files"][new] = m["files"].pop(old)
        m["models"][new] = m["models"].pop(old)

    return change


def link_model_out(ws: Path) -> None:
    """student_int8.tflite replaced by a link to a file outside the bundle (same bytes, so only
    the link gives it away)."""
    target = ws / "outside" / "model.tflite"
    shutil.copy(ws / "bundle" / "student_int8.tflite", target)
    (ws / "bundle" / "student_int8.tflite").unlink()
    os.symlink(target, ws / "bundle" / "student_int8.tflite")


def plant_eval(ws: Path, data: bytes | None = None, **arrays: np.ndarray) -> None:
    path = ws / "bundle" / "eval.npz"
    if data is not None:
        path.write_bytes(data)
    else:
        np.savez(path, **arrays)
    reseal(ws / "bundle")


def image_data(ws: Path, classes: tuple[str, ...] = ("a", "b"), extra: str | None = None) -> None:
    """A tiny ImageFolder at ``ws/data``; ``extra``: a file of the workspace added to train/a/."""
    make_imagefolder(ws / "data", {name: 4 for name in classes}, size=(8, 8))
    if extra:
        shutil.copy(ws / extra, ws / "data" / "train" / "a" / extra)


def nan_tiff(ws: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(ws / "nan.tif")


IMAGES = ("--set", "data.name=imagefolder", "--set", "data.root={ws}/data")


def plant_arch(path: Path) -> None:
    """Rewrite a checkpoint's architecture name to the marker module's factory."""
    import torch

    ckpt = torch.load(path, weights_only=True)
    ckpt["arch"] = "markermod:make"
    ckpt["kwargs"] = {}
    torch.save(ckpt, path)


def forge_checkpoint(src: Path, dst: Path, change: Callable[[dict], object]) -> None:
    """``src`` copied to ``dst``, its content changed by ``change``."""
    import torch

    ckpt = torch.load(src, weights_only=True)
    change(ckpt)
    torch.save(ckpt, dst)


def with_setup(action: Callable[[Path], object], argv: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def setup(ws: Path) -> list[str]:
        action(ws)
        return argv(ws)

    return setup


def w(*args: str) -> Callable[[Path], list[str]]:
    """argv with ``{ws}`` replaced by the workspace path."""
    return lambda ws: [a.replace("{ws}", str(ws)) for a in args]


BUNDLE = ("--artifacts", "{ws}/bundle")
FAST = ("--runs", "2", "--warmup", "0", "--out", "{ws}/report")
DEPLOY = ("deploy", "--host", "pi@fake", "--artifacts", "{ws}/bundle")


# ---------------------------------------------------------------- the cases

DISTILL = [
    Case(
        "distill-unknown-key",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "distill.temprature=4"),
        needle="did you mean",
    ),
    Case(
        "distill-nan-temperature",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "distill.temperature=nan"),
        needle="temperature",
    ),
    Case(  # inside (0, 1000] once, but logits / T overflow float32: a NaN loss
        "distill-tiny-temperature",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "distill.temperature=1e-300"),
        needle="distill.temperature must be a number from 0.01 to 1000, got 1e-300",
    ),
    Case("distill-inf-lr", w("distill", "--out", "{ws}/new", *TINY, "--set", "student.lr=inf"), needle="lr"),
    Case(
        "distill-negative-epochs",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "student.epochs=-1"),
        needle="epochs",
    ),
    Case("distill-alpha-above-1", w("distill", "--out", "{ws}/new", *TINY, "--set", "distill.alpha=2"), needle="alpha"),
    Case(
        "distill-unknown-method", w("distill", "--out", "{ws}/new", *TINY, "--set", "distill.method=kdd"), needle="kd"
    ),
    Case(
        "distill-unknown-dataset", w("distill", "--out", "{ws}/new", *TINY, "--set", "data.name=digts"), needle="digits"
    ),
    Case(
        "distill-unknown-student-arch",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "student.arch=test_studnet"),
        needle="test_studnet",
    ),
    Case(
        "distill-set-without-equals", w("distill", "--out", "{ws}/new", "--set", "student.epochs"), needle="KEY=VALUE"
    ),
    Case("distill-config-missing", w("distill", "--out", "{ws}/new", "--config", "{ws}/nope.yaml"), needle="not found"),
    Case(
        "distill-config-not-yaml",
        with_setup(
            lambda ws: (ws / "bad.yaml").write_text("a: [1,\n"),
            w("distill", "--out", "{ws}/new", "--config", "{ws}/bad.yaml"),
        ),
        needle="YAML",
    ),
    Case(
        "distill-config-python-tag",
        with_setup(
            lambda ws: (ws / "tag.yaml").write_text(
                "name: !!python/object/apply:os.system ['touch {ws}/outside/pwned']\n"
            ),
            w("distill", "--out", "{ws}/new", "--config", "{ws}/tag.yaml"),
        ),
    ),
    Case(
        "distill-teacher-checkpoint-missing",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/nope.pt"),
        needle="nope.pt",
    ),
    Case(
        "distill-teacher-checkpoint-garbage",
        with_setup(
            lambda ws: (ws / "junk.pt").write_bytes(b"not a checkpoint" * 8),
            w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/junk.pt"),
        ),
        needle="junk.pt",
    ),
    Case(
        "distill-planted-checkpoint-arch",
        with_setup(
            lambda ws: (shutil.copy(ws / "run" / "teacher.pt", ws / "evil.pt"), plant_arch(ws / "evil.pt")),
            w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/evil.pt"),
        ),
        needle="markermod",
    ),
    Case(
        "distill-teacher-checkpoint-data-a-string",
        with_setup(
            lambda ws: forge_checkpoint(ws / "run" / "teacher.pt", ws / "forged.pt", lambda c: c.update(data="x")),
            w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/forged.pt"),
        ),
        needle="data must be a mapping",
    ),
    Case(
        "distill-teacher-checkpoint-std-zero",
        with_setup(
            lambda ws: forge_checkpoint(
                ws / "run" / "teacher.pt", ws / "forged.pt", lambda c: c["data"].update(std=[0.0])
            ),
            w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/forged.pt"),
        ),
        needle="data.std[0] must be a number above 0",
    ),
    Case(
        "distill-teacher-checkpoint-plain-pickle",
        with_setup(
            lambda ws: (ws / "plain.pt").write_bytes(pickle.dumps({"a": 1}, protocol=4)),
            w("distill", "--out", "{ws}/new", *TINY, "--set", "teacher.checkpoint={ws}/plain.pt"),
        ),
        needle="not a PyTorch pickle stream",
    ),
    Case("distill-out-is-a-file", w("distill", "--out", "{ws}/file.txt", *TINY)),
    Case("distill-out-is-a-user-folder", w("distill", "--out", "{ws}/user", *TINY)),
    Case("distill-existing-run-without-overwrite", w("distill", "--out", "{ws}/run", *TINY), needle="--overwrite"),
    Case(
        "distill-overwrite-with-a-key-typo",
        w("distill", "--out", "{ws}/run", "--overwrite", *TINY, "--set", "distill.temprature=4"),
        needle="did you mean",
    ),
    Case(
        "distill-overwrite-with-a-value-typo",
        w("distill", "--out", "{ws}/run", "--overwrite", *TINY, "--set", "student.arch=test_studnet"),
        needle="test_studnet",
    ),
    Case("distill-resume-without-a-run", w("distill", "--out", "{ws}/new", "--resume", *TINY)),
    Case(
        "distill-batch-size-zero",
        w("distill", "--out", "{ws}/new", *TINY, "--set", "data.batch_size=0"),
        needle="batch_size",
    ),
    Case(
        "distill-imagefolder-huge-image",
        with_setup(lambda ws: image_data(ws, extra="huge.png"), w("distill", "--out", "{ws}/new", *TINY, *IMAGES)),
        needle="huge.png: too large (200000000 pixels",
    ),
    Case(
        "distill-imagefolder-huge-image-streamed",
        with_setup(
            lambda ws: image_data(ws, extra="huge.png"),
            w("distill", "--out", "{ws}/new", *TINY, *IMAGES, "--set", "data.storage=stream"),
        ),
        needle="huge.png: too large (200000000 pixels",
    ),
    Case(
        "distill-imagefolder-float-image",
        with_setup(
            lambda ws: (nan_tiff(ws), image_data(ws, extra="nan.tif")),
            w("distill", "--out", "{ws}/new", *TINY, *IMAGES),
        ),
        needle="nan.tif: floating-point pixels (mode F)",
    ),
    Case(
        "distill-imagefolder-one-class",
        with_setup(lambda ws: image_data(ws, classes=("a",)), w("distill", "--out", "{ws}/new", *TINY, *IMAGES)),
        needle="one class folder (a); classification needs at least 2",
    ),
]

EXPORT = [
    Case("export-run-missing", w("export", "--run", "{ws}/nope", "--out", "{ws}/b2"), needle="nope"),
    Case(
        "export-run-not-a-run",
        w("export", "--run", "{ws}/user", "--out", "{ws}/b2"),
        needle="not a finished distill run",
    ),
    Case(
        "export-unknown-format",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.formats=[onnx,tflite_int9]"),
        needle="tflite_int9",
    ),
    Case(
        "export-non-export-key",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "student.lr=1"),
        needle="export.* keys only",
    ),
    Case(
        "export-unknown-export-key",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.formts=[onnx]"),
        needle="did you mean",
    ),
    Case(
        "export-old-opset",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.opset=3"),
        needle="opset",
    ),
    Case(
        "export-future-opset",  # failed after the parity setup (99), or dumped torch's graph first (1e20)
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.opset=100000000000000000000"),
        needle="export.opset must be in [17, 20]",
    ),
    Case(
        "export-model-twice",  # the student was converted twice, the second file replacing the first
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.models=[student,student]"),
        needle="export.models lists student twice",
    ),
    Case(
        "export-format-twice",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.formats=[onnx,tflite_int8,onnx]"),
        needle="export.formats lists onnx twice",
    ),
    Case(
        "export-zero-calibration",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.calibration_samples=0"),
        needle="calibration_samples",
    ),
    Case(  # an exponent too many was clamped to the data's size and exported
        "export-huge-parity-samples",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.parity_samples=1000000000000"),
        needle="config: export.parity_samples must be an integer from 1 to 1000000, got 1000000000000",
    ),
    Case(
        "export-unknown-backend",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.backend=tflitee"),
        needle="tflitee",
    ),
    Case(
        "export-nan-bound",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.fp32_max_abs_diff=nan"),
        needle="fp32_max_abs_diff",
    ),
    Case(
        "export-corrupt-checkpoint",
        with_setup(
            lambda ws: (ws / "run" / "student.pt").write_bytes(b"junk" * 100),
            w("export", "--run", "{ws}/run", "--out", "{ws}/b2"),
        ),
        needle="student.pt",
    ),
    Case(
        "export-corrupt-config",
        with_setup(
            lambda ws: (ws / "run" / "config.yaml").write_text("data: [\n"),
            w("export", "--run", "{ws}/run", "--out", "{ws}/b2"),
        ),
        needle="YAML",
    ),
    Case(
        "export-planted-checkpoint-arch",
        with_setup(
            lambda ws: plant_arch(ws / "run" / "student.pt"), w("export", "--run", "{ws}/run", "--out", "{ws}/b2")
        ),
        needle="markermod",
    ),
    Case("export-out-is-a-file", w("export", "--run", "{ws}/run", "--out", "{ws}/file.txt")),
    Case(
        "export-no-models",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.models=[]"),
        needle="export.models is empty",
    ),
    Case(
        "export-student-without-formats",
        w("export", "--run", "{ws}/run", "--out", "{ws}/b2", "--set", "export.formats=[]"),
        needle="export.formats is empty",
    ),
    Case("export-out-is-a-user-folder", w("export", "--run", "{ws}/run", "--out", "{ws}/user")),
    Case("export-out-is-the-run", w("export", "--run", "{ws}/run", "--out", "{ws}/run")),
    Case("export-out-is-above-the-run", w("export", "--run", "{ws}/run", "--out", "{ws}")),
]

BENCH = [
    Case("bench-bundle-missing", w("bench", "--artifacts", "{ws}/nope"), needle="bundle not found"),
    Case("bench-no-manifest", w("bench", "--artifacts", "{ws}/user"), needle="manifest.json is missing"),
    Case(
        "bench-manifest-not-json",
        with_setup(lambda ws: (ws / "bundle" / "manifest.json").write_text("{nope"), w("bench", *BUNDLE)),
        needle="corrupt",
    ),
    Case(
        "bench-manifest-files-a-list",
        with_setup(lambda ws: edit_manifest(ws, lambda m: m.__setitem__("files", [])), w("bench", *BUNDLE)),
        needle="malformed",
    ),
    Case(
        "bench-manifest-bytes-a-string",
        with_setup(
            lambda ws: edit_manifest(ws, lambda m: m["files"]["eval.npz"].__setitem__("bytes", "10")),
            w("bench", *BUNDLE),
        ),
        needle="malformed",
    ),
    Case(
        "bench-manifest-model-without-role",
        with_setup(
            lambda ws: edit_manifest(ws, lambda m: m["models"]["student.onnx"].pop("role")), w("bench", *BUNDLE)
        ),
        needle="role",
    ),
    Case(
        "bench-manifest-eval-not-listed",
        with_setup(
            lambda ws: edit_manifest(ws, lambda m: m["eval"].__setitem__("file", "../outside/eval.npz")),
            w("bench", *BUNDLE),
        ),
        needle="eval",
    ),
    Case(
        "bench-manifest-dotdot-name",
        with_setup(
            lambda ws: edit_manifest(ws, rename_entry("student_int8.tflite", "../outside/model.tflite")),
            w("bench", *BUNDLE),
        ),
        needle="not a plain relative path",
    ),
    Case(
        "bench-manifest-absolute-name",
        with_setup(
            lambda ws: edit_manifest(ws, rename_entry("student_int8.tflite", "/etc/hostname")), w("bench", *BUNDLE)
        ),
        needle="not a plain relative path",
    ),
    Case("bench-model-is-a-link-out", with_setup(link_model_out, w("bench", *BUNDLE, *FAST)), needle="leads out of"),
    Case(
        "bench-report-folder-is-a-link-out",
        with_setup(lambda ws: os.symlink(ws / "outside", ws / "bundle" / "bench"), w("bench", *BUNDLE, "--runs", "2")),
        needle="symbolic link",
    ),
    Case(
        "bench-out-through-a-link-in-the-bundle",
        with_setup(
            lambda ws: os.symlink(ws / "outside", ws / "bundle" / "bench"),
            w("bench", *BUNDLE, "--runs", "2", "--out", "{ws}/bundle/bench/x"),
        ),
        needle="symbolic link",
    ),
    Case(
        "bench-tampered-model",
        with_setup(
            lambda ws: (ws / "bundle" / "student.onnx").write_bytes(
                b"x" * (ws / "bundle" / "student.onnx").stat().st_size
            ),
            w("bench", *BUNDLE, *FAST),
        ),
        needle="sha256 mismatch",
    ),
    Case(
        "bench-unlisted-file",
        with_setup(lambda ws: (ws / "bundle" / "extra.tflite").write_bytes(b"x"), w("bench", *BUNDLE, *FAST)),
        needle="not in the manifest",
    ),
    Case("bench-threads-999", w("bench", *BUNDLE, *FAST, "--threads", "999"), needle="--threads"),
    Case(
        "bench-threads-above-cores",
        w("bench", *BUNDLE, *FAST, "--threads", str(len(os.sched_getaffinity(0)) + 1)),
        needle="core",
    ),
    Case("bench-threads-0", w("bench", *BUNDLE, *FAST, "--threads", "0"), needle="--threads"),
    Case("bench-threads-negative", w("bench", *BUNDLE, *FAST, "--threads", "-3"), needle="--threads"),
    Case("bench-threads-nan", w("bench", *BUNDLE, *FAST, "--threads", "nan"), needle="--threads"),
    Case("bench-runs-0", w("bench", *BUNDLE, "--out", "{ws}/report", "--runs", "0"), needle="--runs"),
    Case("bench-runs-negative", w("bench", *BUNDLE, "--out", "{ws}/report", "--runs", "-5"), needle="--runs"),
    Case("bench-runs-huge", w("bench", *BUNDLE, "--out", "{ws}/report", "--runs", "100000000"), needle="--runs"),
    Case("bench-warmup-negative", w("bench", *BUNDLE, "--out", "{ws}/report", "--warmup", "-1"), needle="--warmup"),
    Case("bench-min-accuracy-percent", w("bench", *BUNDLE, *FAST, "--min-accuracy", "95"), needle="fraction"),
    Case("bench-min-accuracy-nan", w("bench", *BUNDLE, *FAST, "--min-accuracy", "nan"), needle="--min-accuracy"),
    Case("bench-out-is-a-file", w("bench", *BUNDLE, "--runs", "2", "--out", "{ws}/file.txt"), needle="existing file"),
    Case(
        "bench-out-under-a-file", w("bench", *BUNDLE, "--runs", "2", "--out", "{ws}/file.txt/report"), needle="file.txt"
    ),
    Case("bench-out-is-a-users-folder", w("bench", *BUNDLE, "--out", "{ws}/user"), needle="did not make"),
    Case(
        "bench-out-holds-a-users-bench-json",
        with_setup(lambda ws: (ws / "user" / "bench.json").write_text("{}"), w("bench", *BUNDLE, "--out", "{ws}/user")),
        needle="notes.txt",
    ),
    Case(
        "bench-out-read-only-place",
        w("bench", *BUNDLE, "--runs", "2", "--out", "/proc/edgekd-report"),
        needle="is not writable",
    ),
    Case("bench-json-is-a-folder", w("bench", *BUNDLE, *FAST, "--json", "{ws}/user"), needle="--json"),
    Case(
        "bench-json-is-the-model",
        w("bench", "--model", "{ws}/bundle/student_int8.tflite", *FAST, "--json", "{ws}/bundle/student_int8.tflite"),
        needle="not an edgekd bench JSON",
    ),
    Case(
        "bench-json-is-the-manifest",
        w("bench", *BUNDLE, *FAST, "--json", "{ws}/bundle/manifest.json"),
        needle="is inside",
    ),
    Case("bench-json-is-a-users-file", w("bench", *BUNDLE, *FAST, "--json", "{ws}/file.txt"), needle="not an edgekd"),
    Case(
        "bench-unknown-format",
        w("bench", *BUNDLE, *FAST, "--formats", "tflite_int9"),
        needle="did you mean 'tflite_int8'",
    ),
    Case("bench-unknown-model", w("bench", *BUNDLE, *FAST, "--models", "studnet"), needle="did you mean 'student'"),
    Case("bench-unknown-device", w("bench", *BUNDLE, *FAST, "--device", "cpuu"), needle="did you mean 'cpu'"),
    Case("bench-mcu-flag-on-cpu", w("bench", *BUNDLE, *FAST, "--mcu", "cortex-m4"), needle="--mcu does not apply"),
    Case("bench-model-file-missing", w("bench", "--model", "{ws}/nope.tflite", "--runs", "2"), needle="no such file"),
    Case("bench-model-not-a-model", w("bench", "--model", "{ws}/file.txt", "--runs", "2"), needle="not a model file"),
    Case(
        "bench-model-onnx-that-is-a-tflite",
        with_setup(
            lambda ws: shutil.copy(ws / "bundle" / "student_int8.tflite", ws / "outside" / "m.onnx"),
            w("bench", "--model", "{ws}/outside/m.onnx", *FAST),
        ),
        needle="is not a readable ONNX model",
    ),
    Case(
        "bench-model-empty-onnx",
        with_setup(
            lambda ws: (ws / "outside" / "e.onnx").write_bytes(b""), w("bench", "--model", "{ws}/outside/e.onnx", *FAST)
        ),
        needle="holds no graph",
    ),
    Case(
        "bench-model-lone-checkpoint",
        w("bench", "--model", "{ws}/bundle/student.pt", *FAST),
        needle="a lone PyTorch checkpoint has no fixed input shape",
    ),
    Case("bench-model-no-extension", w("bench", "--model", "{ws}/bundle/manifest.json", *FAST), needle="(.onnx, .pt"),
    Case(
        "bench-model-and-artifacts", w("bench", "--model", "{ws}/bundle/student_int8.tflite", *BUNDLE), needle="--model"
    ),
    Case(
        "bench-eval-corrupt",
        with_setup(lambda ws: plant_eval(ws, data=b"PK\x03\x04 not a zip" * 20), w("bench", *BUNDLE, *FAST)),
        needle="eval",
    ),
    Case(
        "bench-eval-without-labels",
        with_setup(lambda ws: plant_eval(ws, images=np.zeros((3, 8, 8, 1), np.uint8)), w("bench", *BUNDLE, *FAST)),
        needle="labels",
    ),
    Case(
        "bench-model-fails-to-load",
        with_setup(
            lambda ws: (
                (ws / "bundle" / "student_fp32.tflite").write_bytes(b"not a flatbuffer" * 64),
                reseal(ws / "bundle"),
            ),
            w("bench", *BUNDLE, *FAST, "--threads", "1", "--models", "student", "--formats", "tflite_fp32"),
        ),
        code=1,
        needle="student/tflite_fp32 failed (load)",
        new="report",
    ),
    # rpi
    Case("bench-rpi-not-a-pi", w("bench", *BUNDLE, *FAST, "--device", "rpi"), needle="not a Raspberry Pi"),
    Case(
        "bench-rpi-threads-999",
        w("bench", *BUNDLE, *FAST, "--device", "rpi", "--force", "--threads", "999"),
        needle="--threads",
    ),
    Case(
        "bench-rpi-mcu-flag",
        w("bench", *BUNDLE, *FAST, "--device", "rpi", "--force", "--ram-kb", "8"),
        needle="--ram-kb does not apply",
    ),
    Case(
        "bench-rpi-onnx-by-name",
        w("bench", *BUNDLE, *FAST, "--device", "rpi", "--force", "--formats", "onnx"),
        code=1,
        needle="student/onnx failed (unsupported)",
        new="report",
    ),
    # mcu
    Case("bench-mcu-ram-nan", w("bench", *BUNDLE, *FAST, "--device", "mcu", "--ram-kb", "nan"), needle="--ram-kb"),
    Case("bench-mcu-ram-zero", w("bench", *BUNDLE, *FAST, "--device", "mcu", "--ram-kb", "0"), needle="--ram-kb"),
    Case(
        "bench-mcu-flash-negative",
        w("bench", *BUNDLE, *FAST, "--device", "mcu", "--flash-kb", "-1"),
        needle="--flash-kb",
    ),
    Case(
        "bench-mcu-flash-inf", w("bench", *BUNDLE, *FAST, "--device", "mcu", "--flash-kb", "inf"), needle="--flash-kb"
    ),
    Case("bench-mcu-threads", w("bench", *BUNDLE, *FAST, "--device", "mcu", "--threads", "4"), needle="one core"),
    Case(
        "bench-mcu-unknown-profile",
        w("bench", *BUNDLE, *FAST, "--device", "mcu", "--mcu", "cortex-m8"),
        needle="did you mean",
    ),
    Case(
        "bench-mcu-eval-corrupt",
        with_setup(
            lambda ws: plant_eval(ws, data=b"\x93NUMPY junk" * 30), w("bench", *BUNDLE, *FAST, "--device", "mcu")
        ),
        needle="eval",
    ),
    Case(
        "bench-mcu-float-by-name",
        w("bench", *BUNDLE, *FAST, "--device", "mcu", "--formats", "tflite_fp32"),
        code=1,
        needle="student/tflite_fp32 failed (unsupported)",
        new="report",
    ),
    Case(  # one file the target cannot take is bad input (a bundle's row is a failed row among others)
        "bench-mcu-float-model-file",
        w("bench", "--device", "mcu", "--model", "{ws}/bundle/student_fp32.tflite", "--out", "{ws}/report"),
        needle="student_fp32.tflite on mcu: MCU targets run full-integer int8 TFLite models only",
    ),
    Case(
        "bench-mcu-model-file-over-budget",
        w("bench", "--device", "mcu", "--model", "{ws}/bundle/student_int8.tflite", *FAST, "--flash-kb", "1"),
        needle="student_int8.tflite on mcu: does not fit the budget",
    ),
    Case(
        "bench-mcu-float-model-labelled-int8",
        with_setup(
            lambda ws: edit_manifest(
                ws, lambda m: m["models"]["student_fp32.tflite"].__setitem__("format", "tflite_int8")
            ),
            w("bench", *BUNDLE, *FAST, "--device", "mcu", "--formats", "tflite_int8", "--models", "student"),
        ),
        code=1,
        needle="student_fp32.tflite is a float model",
        new="report",
    ),
    Case(
        "bench-mcu-over-budget",
        w("bench", *BUNDLE, *FAST, "--device", "mcu", "--formats", "tflite_int8", "--flash-kb", "1"),
        code=1,
        needle="failed (fit): does not fit",
        new="report",
        slow=True,
    ),
]

VERIFY = [
    Case("verify-missing", w("verify", "{ws}/nope"), needle="bundle not found"),
    Case("verify-a-file", w("verify", "{ws}/file.txt"), needle="is a file, not a bundle folder"),
    Case(
        "verify-manifest-is-a-folder",
        with_setup(lambda ws: (ws / "user" / "manifest.json").mkdir(), w("verify", "{ws}/user")),
        needle="manifest.json is not a file",
    ),
    Case("bench-model-is-a-folder", w("bench", "--model", "{ws}/user", *FAST), needle="is a folder; give one model"),
    Case("verify-not-a-bundle", w("verify", "{ws}/user"), needle="manifest.json is missing"),
    Case(
        "verify-manifest-a-link",
        with_setup(
            lambda ws: (
                (ws / "outside" / "m.json").write_bytes((ws / "bundle" / "manifest.json").read_bytes()),
                (ws / "bundle" / "manifest.json").unlink(),
                os.symlink(ws / "outside" / "m.json", ws / "bundle" / "manifest.json"),
            ),
            w("verify", "{ws}/bundle"),
        ),
        needle="symbolic link",
    ),
    Case(
        "verify-manifest-not-json",
        with_setup(lambda ws: (ws / "bundle" / "manifest.json").write_bytes(b"\xff\xfe"), w("verify", "{ws}/bundle")),
        needle="corrupt",
    ),
    Case(
        "verify-manifest-a-list",
        with_setup(lambda ws: (ws / "bundle" / "manifest.json").write_text("[1, 2]"), w("verify", "{ws}/bundle")),
        needle="manifest.json is corrupt (it holds a list)",
    ),
    Case(
        "verify-manifest-sha-a-number",
        with_setup(
            lambda ws: edit_manifest(ws, lambda m: m["files"]["eval.npz"].__setitem__("sha256", 5)),
            w("verify", "{ws}/bundle"),
        ),
        needle="malformed",
    ),
    Case(
        "verify-dotdot-name",
        with_setup(lambda ws: edit_manifest(ws, add_file_entry("../../etc/passwd")), w("verify", "{ws}/bundle")),
        needle="not a plain relative path",
    ),
    Case(
        "verify-absolute-name",
        with_setup(lambda ws: edit_manifest(ws, add_file_entry("/etc/passwd")), w("verify", "{ws}/bundle")),
        needle="not a plain relative path",
    ),
    Case(
        "verify-backslash-name",
        with_setup(lambda ws: edit_manifest(ws, add_file_entry("..\\..\\x")), w("verify", "{ws}/bundle")),
        needle="not a plain relative path",
    ),
    Case("verify-listed-link-out", with_setup(link_model_out, w("verify", "{ws}/bundle")), needle="leads out of"),
    # files that do not match: the documented failure summary (FAILED lines, "N bad"), exit 1
    Case(
        "verify-unlisted-link-out",
        with_setup(lambda ws: os.symlink(ws / "outside", ws / "bundle" / "more"), w("verify", "{ws}/bundle")),
        code=1,
        needle="more: a symbolic link that leads out",
    ),
    Case(
        "verify-report-folder-link-out",
        with_setup(lambda ws: os.symlink(ws / "outside", ws / "bundle" / "bench"), w("verify", "{ws}/bundle")),
        code=1,
        needle="bench: a symbolic link",
    ),
    Case(
        "verify-tampered",
        with_setup(
            lambda ws: (ws / "bundle" / "eval.npz").write_bytes(b"x" * (ws / "bundle" / "eval.npz").stat().st_size),
            w("verify", "{ws}/bundle"),
        ),
        code=1,
        needle="sha256 mismatch",
    ),
]

DEPLOY_CASES = [
    Case(
        "deploy-host-an-option",
        w("deploy", "--host", "-oProxyCommand=touch {ws}/outside/pwned", *BUNDLE),
        needle="--host",
    ),
    Case("deploy-host-with-a-space", w("deploy", "--host", "pi@x y", *BUNDLE), needle="[user@]hostname"),
    Case("deploy-host-with-a-port", w("deploy", "--host", "pi@x:22", *BUNDLE), needle="give the port with --port"),
    Case("deploy-identity-missing", w(*DEPLOY, "--identity", "{ws}/no-key"), needle="no such file"),
    Case("deploy-identity-a-folder", w(*DEPLOY, "--identity", "{ws}/user"), needle="is not a file"),
    Case("deploy-remote-dir-empty", w(*DEPLOY, "--remote-dir", ""), needle="--remote-dir is empty"),
    Case("deploy-remote-dir-the-home", w(*DEPLOY, "--remote-dir", "."), needle="home folder itself"),
    Case("deploy-remote-dir-root", w(*DEPLOY, "--remote-dir", "/"), needle="root folder itself"),
    Case("deploy-port-0", w(*DEPLOY, "--port", "0"), needle="--port"),
    Case("deploy-port-too-big", w(*DEPLOY, "--port", "70000"), needle="--port"),
    Case("deploy-threads-999", w(*DEPLOY, "--bench", "--threads", "999"), needle="--threads"),
    Case("deploy-runs-0", w(*DEPLOY, "--bench", "--runs", "0"), needle="--runs"),
    Case("deploy-timeout-0", w(*DEPLOY, "--timeout", "0"), needle="--timeout"),
    Case("deploy-timeout-nan", w(*DEPLOY, "--timeout", "nan"), needle="--timeout"),
    Case("deploy-bench-timeout-negative", w(*DEPLOY, "--bench-timeout", "-1"), needle="--bench-timeout"),
    Case("deploy-unknown-key", w(*DEPLOY, "--set", "deploy.timeot_s=3"), needle="did you mean"),
    Case("deploy-foreign-key", w(*DEPLOY, "--set", "student.lr=1"), needle="deploy.* keys only"),
    Case("deploy-config-missing", w(*DEPLOY, "--config", "{ws}/nope.yaml"), needle="not found"),
    Case(
        "deploy-bundle-link-out",
        with_setup(lambda ws: os.symlink(ws / "outside", ws / "bundle" / "more"), w(*DEPLOY)),
        needle="leads out of the bundle",
    ),
    Case(
        "deploy-manifest-dotdot",
        with_setup(lambda ws: edit_manifest(ws, add_file_entry("../outside/secret.txt")), w(*DEPLOY)),
        needle="not a plain relative path",
    ),
    Case(
        "deploy-report-folder-link-out",
        with_setup(lambda ws: os.symlink(ws / "outside", ws / "bundle" / "bench"), w(*DEPLOY, "--bench")),
        needle="symbolic link",
    ),
    Case("deploy-out-is-a-file", w(*DEPLOY, "--bench", "--out", "{ws}/file.txt"), needle="existing file"),
    Case("deploy-out-is-a-users-folder", w(*DEPLOY, "--bench", "--out", "{ws}/user"), needle="did not make"),
    Case("deploy-ssh-refused", w(*DEPLOY, "--timeout", "20"), needle="Connection refused"),
    Case("deploy-ssh-hangs", w(*DEPLOY, "--timeout", "1"), needle="gave no result within 1 s"),
]

PREDICT = [
    Case(
        "predict-manifest-dotdot-name",
        with_setup(
            lambda ws: edit_manifest(ws, rename_entry("student_int8.tflite", "../outside/model.tflite")),
            w("predict", "{ws}/img.png", *BUNDLE),
        ),
        needle="not a plain relative path",
    ),
    Case(
        "predict-model-is-a-link-out",
        with_setup(link_model_out, w("predict", "{ws}/img.png", *BUNDLE)),
        needle="leads out of",
    ),
    Case("predict-threads-999", w("predict", "{ws}/img.png", *BUNDLE, "--threads", "999"), needle="--threads"),
    Case("predict-top-k-0", w("predict", "{ws}/img.png", *BUNDLE, "--top-k", "0"), needle="--top-k"),
    Case("predict-json-is-the-image", w("predict", "{ws}/img.png", *BUNDLE, "--json", "{ws}/img.png"), needle="not an"),
    Case(
        "predict-json-in-the-bundle",
        w("predict", "{ws}/img.png", *BUNDLE, "--json", "{ws}/bundle/p.json"),
        needle="is inside",
    ),
    Case(
        "predict-json-two-folders-deep",  # a typo: not made at any depth
        w("predict", "{ws}/img.png", *BUNDLE, "--json", "{ws}/nope/dir/p.json"),
        needle="nope does not exist",
    ),
    Case(
        "predict-masks-on-classification",
        w("predict", "{ws}/img.png", *BUNDLE, "--masks", "{ws}/masks"),
        needle="--masks applies to segmentation bundles only",
    ),
    Case(
        "predict-huge-image",  # named; the other image still runs
        w("predict", "{ws}/img.png", "{ws}/huge.png", *BUNDLE),
        code=1,
        needle="huge.png: too large (200000000 pixels",
    ),
    Case(
        "predict-no-readable-image",
        w("predict", "{ws}/file.txt", *BUNDLE, "--json", "{ws}/p.json"),
        needle="no image could be read",
    ),
]

CASES = DISTILL + EXPORT + BENCH + VERIFY + DEPLOY_CASES + PREDICT
# the fixes these cases need are in the distill/export/config code; a case whose fix has not
# landed yet is listed here: strict, so that the day it passes the marker must go
PENDING: dict[str, str] = {}


def _params() -> list:
    out = []
    for case in CASES:
        marks = list(case.marks)
        if case.slow:
            marks.append(pytest.mark.slow)
        reason = case.xfail or PENDING.get(case.id)
        if reason:
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# ---------------------------------------------------------------- the checks


def snapshot(root: Path) -> dict[str, str]:
    """relative path → what it is (sha256 of a file, target of a link, "dir"); links not followed."""
    tree = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                tree[rel] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(mode):
                tree[rel] = "dir"
            else:
                tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def is_temp(name: str) -> bool:
    """Names of edgekd's temporary files and folders (atomic writes, probes, bench scratch)."""
    return (name.startswith(".") and name.endswith((".tmp", ".old"))) or name.startswith((".edgekd-probe", "edgekd-"))


@pytest.fixture(scope="module")
def pristine(run_dir: Path, tiny_bundle: Path, huge_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace every case starts from (copied per case)."""
    root = tmp_path_factory.mktemp("bad-inputs") / "ws"
    shutil.copytree(run_dir, root / "run", symlinks=True)
    shutil.copytree(tiny_bundle, root / "bundle", symlinks=True, ignore=shutil.ignore_patterns("bench"))
    (root / "user").mkdir()
    (root / "user" / "notes.txt").write_text("a user's own file\n")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text("outside every bundle\n")
    (root / "file.txt").write_text("a plain file\n")
    from PIL import Image

    Image.fromarray(np.full((8, 8), 128, np.uint8), "L").save(root / "img.png")
    shutil.copy(huge_png, root / "huge.png")  # 20000×10000: past edgekd's image limit
    return root


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the marker module and fake ssh/scp/rsync (never inside a workspace)."""
    root = tmp_path_factory.mktemp("bad-input-tools")
    (root / "markermod.py").write_text(MARKER_MODULE)
    for tool in ("ssh", "scp", "rsync"):
        (root / tool).write_text(FAKE_SSH)
        (root / tool).chmod(0o755)
    return root


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("case", _params())
def test_bad_input(
    case: Case,
    pristine: Path,
    tools: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgekd.cli import main

    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws, symlinks=True)
    scratch = tmp_path / "tmp"  # the temp folder of this case alone: left empty, or something leaked
    scratch.mkdir()
    marker = tmp_path / "marker"
    monkeypatch.setenv("EDGEKD_TEST_MARKER", str(marker))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH", "hang" if case.id == "deploy-ssh-hangs" else "fail")
    monkeypatch.setenv("FAKE_SSH_PIDS", str(tmp_path / "ssh-pids"))
    monkeypatch.syspath_prepend(str(tools))
    monkeypatch.chdir(ws)
    argv = case.setup(ws)
    before = snapshot(ws)
    capsys.readouterr()

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    sys.modules.pop("markermod", None)

    assert code == case.code, f"exit {code}, expected {case.code}\n{err[-3000:]}"
    assert "Traceback" not in out + err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    if case.code == 2:
        assert len(errors) == 1, err[-3000:]
        assert case.needle in errors[0], errors[0]
    else:  # the documented failure summary instead of an error line
        assert not errors, err[-3000:]
        summary = [
            ln for ln in (err + out).splitlines() if ln.startswith(("edgekd: bench:", "edgekd: predict:", "FAILED"))
        ]
        assert summary and any(case.needle in ln for ln in summary), err[-3000:] + out[-2000:]
    assert not marker.exists(), "code named inside a file was run"
    after = snapshot(ws)
    changed = [rel for rel, what in before.items() if after.get(rel) != what]
    assert not changed, f"the user's files changed: {changed}"
    new = [
        rel
        for rel in after
        if rel not in before and not (case.new and (rel == case.new or rel.startswith(case.new + "/")))
    ]
    assert not new, f"new files outside the output folder: {new}"
    assert not [rel for rel in after if is_temp(Path(rel).name)], "temporary files left behind"
    assert not list(scratch.iterdir()), f"temporary files left in the temp folder: {list(scratch.iterdir())}"
    if (tmp_path / "ssh-pids").exists():  # a hung step is stopped with its whole process group
        pids = [int(p) for p in (tmp_path / "ssh-pids").read_text().split()]
        assert pids and not [p for p in pids if _alive(p)], "a hung ssh was left running"


def test_the_matrix_is_big_enough() -> None:
    verbs = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 60 and verbs == {"distill", "export", "bench", "verify", "deploy", "predict"}
    assert {"bench-rpi", "bench-mcu"} <= {"-".join(c.id.split("-")[:2]) for c in CASES}
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- a stopped bench stops its workers


def _children(pid: int) -> list[int]:
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat_file.parent.name))
    return kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130), ("SIGKILL", -9)])
def test_stopped_bench_stops_its_worker(sig: str, code: int, tiny_bundle: Path, tmp_path: Path) -> None:
    """`edgekd bench` stopped mid-measurement (SIGTERM from a service manager, Ctrl-C, even SIGKILL)
    leaves no measuring process behind: it would keep a core busy for the rest of its million runs."""
    import signal
    import subprocess
    import time

    from conftest import REPO

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("bench"))
    argv = [
        sys.executable,
        "-m",
        "edgekd",
        "bench",
        "--artifacts",
        str(copy),
        "--models",
        "teacher",
        "--formats",
        "tflite_fp32",
        "--threads",
        "1",
        "--runs",
        "1000000",
        "--warmup",
        "0",
        "--out",
        str(tmp_path / "report"),
    ]
    # SIGINT as an interactive shell leaves it: a test run started in the background of a script
    # (`cmd &`) inherits SIGINT ignored, and the bench would rightly keep running
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not workers and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert workers, f"no measuring process appeared: {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(2)  # runtime loaded, timing under way
        os.kill(proc.pid, getattr(signal, sig))
        proc.wait(timeout=60)
        assert proc.returncode == code, proc.stderr.read()[-2000:]
        deadline = time.monotonic() + 10
        while [p for p in workers if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "the measuring process outlived the bench"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:  # the test's own processes only, should the check above have failed
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
