"""Bring your own model and data: a class count that comes from the data only, a factory beside the
config, a whole pickled module, a loaded teacher near chance, a stage that ends near chance,
`--set student.arch` with the old architecture's kwargs, and what data.augment=auto means."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint
from edgekd.cli import main
from edgekd.config import load_config
from edgekd.errors import CheckpointError, EdgekdError
from edgekd.models import create_model
from edgekd.tasks import get_task
from edgekd.train.run import distill

FAST = {"teacher.epochs": 1, "student.epochs": 1, "distill.baseline": "false"}


def test_class_count_comes_from_the_data_in_one_place() -> None:
    # torchvision's factory takes num_classes itself: the same value given again is dropped
    model = create_model("torchvision.models:mobilenet_v3_small", 5, 3, (32, 32), num_classes=5)
    assert model.classifier[-1].out_features == 5
    with pytest.raises(
        EdgekdError, match=r"kwargs sets num_classes=3, but num_classes comes from the data \(5\); remove it"
    ):
        create_model("torchvision.models:mobilenet_v3_small", 5, 3, (32, 32), num_classes=3)
    with pytest.raises(EdgekdError, match="in_channels comes from the data"):
        create_model("test_student", 10, 1, (8, 8), in_channels=3)


def test_kwarg_clash_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        "-q",
        "distill",
        "--out",
        str(tmp_path / "r"),
        *[a for o in tiny_overrides(**FAST) for a in ("--set", o)],
        "--set",
        "student.kwargs={num_classes: 5}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("edgekd: error: ")
        and "model 'test_student': kwargs sets num_classes=5, but num_classes comes from the data (10)" in err
    )
    assert len(err.splitlines()) == 1


def test_whole_pickled_module_says_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "whole.pt"
    torch.save(create_model("test_teacher", 10, 1, (8, 8)), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "holds pickled Python objects, not only tensors (it names edgekd.models.tiny.TinyCNN)" in message
    assert (
        "torch.save(model.state_dict(), PATH)" in message
        and "\x1b" not in message
        and "weights_only=False" not in message
    )
    args = [
        "-q",
        "distill",
        "--out",
        str(tmp_path / "r"),
        *[a for o in tiny_overrides(**FAST) for a in ("--set", o)],
        "--set",
        f"teacher.checkpoint={path}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err and "holds pickled Python objects" in err


def test_escape_codes_never_reach_an_error_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd.cli as cli

    def boom(args):
        raise EdgekdError("a \x1b[1mbold\x1b[0m claim")

    monkeypatch.setattr(cli, "_cmd_methods", boom)
    assert main(["methods"]) == 2
    assert capsys.readouterr().err == "edgekd: error: a bold claim\n"


FACTORY = """
from torch import nn

def build(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )
"""


def test_factory_beside_the_config_and_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_dir, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    cfg_dir.mkdir()
    elsewhere.mkdir()
    (cfg_dir / "byo_factory_cfg.py").write_text(FACTORY)
    (cfg_dir / "exp.yaml").write_text("student:\n  arch: byo_factory_cfg:build\n")
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    summary = distill(
        cfg_dir / "exp.yaml",
        out=tmp_path / "r1",
        set=tiny_overrides(**FAST, **{"student.arch": "byo_factory_cfg:build"}),
    )
    assert summary["student"]["arch"] == "byo_factory_cfg:build"
    (elsewhere / "byo_factory_cwd.py").write_text(FACTORY)
    summary = distill(out=tmp_path / "r2", set=tiny_overrides(**FAST, **{"student.arch": "byo_factory_cwd:build"}))
    assert summary["student"]["arch"] == "byo_factory_cwd:build"
    with pytest.raises(EdgekdError, match=r"cannot import 'byo_nowhere'.*searched the Python path and"):
        distill(out=tmp_path / "r3", set=tiny_overrides(**FAST, **{"student.arch": "byo_nowhere:build"}))
    with pytest.raises(EdgekdError, match="cannot import 'byo_factory_cwd2'"):  # outside distill: no extra path
        create_model("byo_factory_cwd2:build", 10, 1, (8, 8))


def test_near_chance_stage_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    summary = distill(out=tmp_path / "r", set=tiny_overrides(**FAST, **{"student.lr": 1e-9, "student.weight_decay": 0}))
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert saved == summary
    weak = [w for w in summary["warnings"] if w.startswith("student (test_student): test acc")]
    assert weak and "chance 10.0 % for 10 classes" in weak[0] and summary["student"]["near_chance"] is True
    captured = capsys.readouterr()
    assert "student (NEAR CHANCE)" in captured.out and "NEAR CHANCE: student" in captured.err


def test_loaded_teacher_near_chance_stops_before_kd(tmp_path: Path) -> None:
    weights = tmp_path / "random_teacher.pt"
    torch.manual_seed(0)
    torch.save(create_model("test_teacher", 10, 1, (8, 8)).state_dict(), weights)
    over = tiny_overrides(**{**FAST, "teacher.checkpoint": str(weights), "teacher.epochs": 0})
    with pytest.raises(
        EdgekdError, match=r"scores val acc .* near chance.*teacher.mean/teacher.std.*distill.allow_weak_teacher=true"
    ):
        distill(out=tmp_path / "r", set=over)
    assert not (tmp_path / "r" / "student.pt").exists()  # stopped before KD
    summary = distill(out=tmp_path / "r2", set=[*over, "distill.allow_weak_teacher=true"])
    assert "student" in summary


def test_set_arch_drops_the_old_architectures_kwargs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("student:\n  arch: plain2\n  kwargs: {width: 0.5}\n")
    assert load_config(cfg).student.kwargs == {"width": 0.5}
    config = load_config(cfg, ["student.arch=test_student"])
    assert config.student.kwargs == {} and config.student.arch == "test_student"
    assert (
        "note: student.arch changed to 'test_student': dropping student.kwargs {'width': 0.5}"
        in capsys.readouterr().err
    )
    assert load_config(cfg, ["student.arch=test_student", "student.kwargs={width: 2}"]).student.kwargs == {"width": 2}
    assert load_config(cfg, ["student.arch=plain2"]).student.kwargs == {"width": 0.5}  # same arch: kept


@pytest.mark.parametrize(
    ("channels", "size", "task", "expected"),
    [
        (3, (32, 32), "classification", "crop_flip"),
        (3, (64, 64), "classification", "crop_flip"),
        (3, (224, 160), "classification", "crop_flip"),
        (1, (8, 8), "classification", "none"),
        (1, (28, 28), "classification", "none"),
        (3, (8, 8), "classification", "none"),
        (1, (101, 101), "segmentation", "crop_flip"),
    ],
)
def test_augment_auto(channels: int, size: tuple[int, int], task: str, expected: str) -> None:
    assert get_task(task).auto_augment(channels, size) == expected


def test_no_pythonpath_needed_env_untouched() -> None:
    """The factory search path is scoped to distill: sys.path is as before afterwards."""
    import sys

    before = list(sys.path)
    from edgekd.models import factory_search_path

    with factory_search_path([os.getcwd()]):
        pass
    assert sys.path == before


# -- torchvision: and timm: names ------------------------------------------------------------


def test_torchvision_by_name_head_and_channels_fit_the_data(tmp_path: Path) -> None:
    import torchvision

    model = create_model("torchvision:mobilenet_v3_small", 5, 1, (32, 32)).eval()
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 5) and model.features[0][0].in_channels == 1
    # local pretrained weights (ImageNet-shaped: 1000 classes, RGB), head resized after loading
    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v3_small()
    weights = tmp_path / "mnv3.pth"
    torch.save(source.state_dict(), weights)
    model = create_model("torchvision:mobilenet_v3_small", 3, 1, (32, 32), pretrained=str(weights)).eval()
    assert model.classifier[-1].out_features == 3
    assert torch.equal(
        model.features[0][0].weight, source.features[0][0].weight.sum(1, keepdim=True)
    )  # RGB filters summed
    assert torch.equal(model.features[3].block[0][0].weight, source.features[3].block[0][0].weight)
    with pytest.raises(
        EdgekdError, match=r"unknown torchvision model 'mobilenet_v3_smal'; did you mean mobilenet_v3_small"
    ):
        create_model("torchvision:mobilenet_v3_smal", 3, 3, (32, 32))
    with pytest.raises(EdgekdError, match="pretrained weights not found: .*never downloads"):
        create_model("torchvision:mobilenet_v3_small", 3, 3, (32, 32), pretrained=str(tmp_path / "none.pth"))


def test_timm_by_name_with_local_weights(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install 'edgekd[timm]')")
    torch.manual_seed(0)
    source = timm.create_model("mobilenetv3_small_050")
    weights = tmp_path / "timm.pth"
    torch.save(source.state_dict(), weights)
    model = create_model("timm:mobilenetv3_small_050", 4, 1, (32, 32), pretrained=str(weights)).eval()
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 4)
    assert torch.equal(model.blocks[1][0].conv_pw.weight, source.blocks[1][0].conv_pw.weight)
    with pytest.raises(EdgekdError, match="unknown timm model"):
        create_model("timm:no_such_net_xyz", 4, 1, (32, 32))


def test_torchvision_student_on_an_imagefolder_classes_from_data(tmp_path: Path) -> None:
    """A torchvision MobileNetV3-small student on the user's ImageFolder: the class count comes
    from the folders (3), the checkpoint rebuilds without the pretrained file."""
    from conftest import make_imagefolder
    from edgekd.checkpoint import load_model

    root = make_imagefolder(tmp_path / "data", {"cat": 12, "dog": 12, "owl": 12}, size=(32, 32), mode="RGB")
    over = [
        *tiny_overrides(**FAST),
        "data.name=imagefolder",
        f"data.root={root}",
        "student.arch=torchvision:mobilenet_v3_small",
        "data.batch_size=16",
    ]
    summary = distill(out=tmp_path / "r", set=over)
    assert summary["student"]["arch"] == "torchvision:mobilenet_v3_small" and summary["data"]["num_classes"] == 3
    model, ckpt = load_model(tmp_path / "r" / "student.pt")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_state_dict_teacher_with_its_own_mean_std(tmp_path: Path) -> None:
    """A teacher trained with other normalization statistics (here data.mean/std 0.5/0.25 instead
    of the digits' own), handed over as a bare state_dict: with teacher.mean/std it scores exactly
    what it scored where it was trained, and its checkpoint (and so the bundle) records its own."""
    first = distill(
        out=tmp_path / "a",
        set=tiny_overrides(**{**FAST, "teacher.epochs": 3, "data.mean": "[0.5]", "data.std": "[0.25]"}),
    )
    weights = tmp_path / "teacher_weights.pt"
    torch.save(load_checkpoint(tmp_path / "a" / "teacher.pt")["state_dict"], weights)
    over = tiny_overrides(
        **{
            **FAST,
            "teacher.checkpoint": str(weights),
            "teacher.epochs": 0,
            "teacher.mean": "[0.5]",
            "teacher.std": "[0.25]",
        }
    )
    second = distill(out=tmp_path / "b", set=over)
    assert (
        second["teacher"]["val_acc"] == first["teacher"]["val_acc"]
        and second["teacher"]["test_acc"] == first["teacher"]["test_acc"]
    )
    saved = load_checkpoint(tmp_path / "b" / "teacher.pt")["data"]
    assert saved["mean"] == [0.5] and saved["std"] == [0.25]
    assert second["data"]["mean"] != [0.5]  # the student learned with the data's own statistics
    with pytest.raises(EdgekdError, match="teacher.mean and teacher.std go together"):
        load_config(None, ["teacher.mean=[0.5]", f"teacher.checkpoint={weights}"])
    with pytest.raises(EdgekdError, match="0-1 pixel scale"):
        load_config(None, ["teacher.mean=[128]", "teacher.std=[0.2]", f"teacher.checkpoint={weights}"])
    with pytest.raises(EdgekdError, match="give teacher.checkpoint too"):
        load_config(None, ["teacher.mean=[0.5]", "teacher.std=[0.2]"])


def test_student_with_its_own_mean_std_trains_exports_and_predicts(tmp_path: Path) -> None:
    """student.mean/std (here 0.5/0.5, not the digits' own): the student and its baseline learn
    from batches normalized with them (the teacher, trained here with the data's, is fed its own),
    the checkpoint and the bundle record them, every exported file folds them in (parity passes)
    and the Predictor on the bundle gives the PyTorch student's classes, computed here with the
    configured statistics by hand, on every eval image."""
    import numpy as np

    from edgekd.checkpoint import load_model
    from edgekd.exporters.export import export
    from edgekd.predict import Predictor

    run = tmp_path / "r"
    over = {
        **FAST,
        "teacher.epochs": 3,
        "student.epochs": 6,
        "student.lr": 0.2,
        "distill.baseline": "true",
        "student.mean": "[0.5]",
        "student.std": "[0.5]",
    }
    summary = distill(out=run, set=tiny_overrides(**over))
    assert summary["data"]["mean"] != [0.5]  # the data's own statistics, the teacher's
    assert load_checkpoint(run / "teacher.pt")["data"]["mean"] == summary["data"]["mean"]
    for role in ("student", "baseline"):
        own = load_checkpoint(run / f"{role}.pt")["data"]
        assert own["mean"] == [0.5] and own["std"] == [0.5], role
    student, _ = load_model(run / "student.pt")

    def by_hand(images_nhwc: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy()).float() / 255.0
        with torch.no_grad():
            return student((x - 0.5) / 0.5).argmax(1).numpy()

    from edgekd.config import load_config
    from edgekd.data import load_dataset

    data = load_dataset(load_config(run / "config.yaml").data)
    test_acc = float((by_hand(data.test.images.transpose(0, 2, 3, 1)) == data.test.labels).mean())
    assert round(test_acc, 6) == summary["student"]["test_acc"]  # trained and evaluated on its own statistics

    bundle = tmp_path / "bundle"
    # the int8 file of this 438-parameter student may miss the 99 % agreement bound (as in the shared
    # tiny bundle); the exact formats' bound (max |Δlogit|) is what a wrong normalization breaks
    manifest = export(
        run=run,
        out=bundle,
        set=["export.formats=[pytorch, onnx, tflite_fp32, tflite_int8]"],
        allow_parity_failure=True,
    )
    exact = [n for n, m in manifest["metrics"].items() if m["format"] != "tflite_int8"]
    assert len(exact) == 6 and all(manifest["metrics"][n]["ok"] for n in exact), manifest["metrics"]
    assert manifest["preprocessing"]["mean"] == [0.5] and manifest["preprocessing"]["std"] == [0.5]
    assert manifest["roles"]["student"]["normalization"] == {"mean": [0.5], "std": [0.5]}
    assert manifest["roles"]["teacher"]["normalization"]["mean"] == summary["data"]["mean"]
    for name, entry in manifest["models"].items():
        if entry["role"] == "student":
            assert entry["input"]["mean"] == [0.5] and entry["input"]["std"] == [0.5], name
    with np.load(bundle / "eval.npz") as ev:
        images = ev["images"]
    expected = by_hand(images)
    for fmt in ("onnx", "tflite_fp32"):
        p = Predictor(bundle, format=fmt)
        got = np.array([p.labels.index(p.predict(img).label) for img in images])
        assert (got == expected).all(), f"{fmt}: {int((got != expected).sum())} of {len(got)} images differ"
    p = Predictor(bundle)  # int8: the same classes up to quantization (the data's statistics folded: about half)
    got = np.array([p.labels.index(p.predict(img).label) for img in images])
    assert (got == expected).mean() >= 0.9, f"int8 agrees on {(got == expected).mean():.1%}"


def test_student_statistics_reach_the_teacher_re_normalized() -> None:
    """The teacher of a student with statistics of its own sees exactly what it saw before."""
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.train.student_stage import StudentStages

    cfg = load_config(None, ["data.name=digits", "student.mean=[0.5]", "student.std=[0.25]"])
    data = load_dataset(cfg.data)
    torch.manual_seed(0)
    teacher = create_model("test_teacher", data.num_classes, data.in_channels, data.image_size).eval()
    own, fed = StudentStages.own_input(cfg.student, data, teacher)
    assert own.mean == (0.5,) and own.std == (0.25,) and data.mean != (0.5,)
    pixels = torch.from_numpy(data.val.images[:32]).float() / 255.0
    with torch.no_grad():
        before = teacher((pixels - data.mean[0]) / data.std[0])
        after = fed((pixels - 0.5) / 0.25)
    assert torch.allclose(before, after, atol=1e-5)
    assert StudentStages.own_input(load_config(None, []).student, data, teacher) == (data, teacher)  # none: as is


def test_student_statistics_are_range_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for bad, message in (
        (["student.mean=[0.5]"], "student.mean and student.std go together"),
        (["student.mean=[0.5]", "student.std=[0]"], r"student.std values must be in \(0, 1\]"),
        (["student.mean=[1.5]", "student.std=[0.5]"], "student.mean values are on the 0-1 pixel scale"),
        (["student.mean=[0.5]", "student.std=[.inf]"], "must be a finite number"),
    ):
        with pytest.raises(EdgekdError, match=message):
            load_config(None, bad)
    args = ["-q", "distill", "--out", str(tmp_path / "r")]
    args += [a for o in tiny_overrides(**FAST) for a in ("--set", o)]
    args += ["--set", "student.mean=[0.5, 0.5, 0.5]", "--set", "student.std=[0.5, 0.5, 0.5]"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edgekd: error: config: student.mean has 3 values, the data 1 channel(s)"
    assert not (tmp_path / "r").exists()  # refused before the folder is made


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits teacher that learned (val well above chance), as an edgekd checkpoint."""
    out = tmp_path_factory.mktemp("byo-teacher") / "r"
    summary = distill(out=out, set=tiny_overrides(**{**FAST, "teacher.epochs": 3}))
    assert summary["teacher"]["val_acc"] > 0.5
    return out / "teacher.pt"


def _permuted(teacher: Path, path: Path, relabel: bool) -> Path:
    """The teacher with its output classes rotated by one: class i's logit now sits at i+1. With
    ``relabel`` the checkpoint says so (its classes list rotated alike: trained with another class
    order); without, the labels silently mean other classes (as if trained on shuffled labels)."""
    from edgekd.checkpoint import save_checkpoint

    ckpt = load_checkpoint(teacher)
    state = dict(ckpt["state_dict"])
    state["fc.weight"] = torch.roll(state["fc.weight"], 1, dims=0)
    state["fc.bias"] = torch.roll(state["fc.bias"], 1, dims=0)
    data = dict(ckpt["data"])
    if relabel:
        data["classes"] = data["classes"][-1:] + data["classes"][:-1]
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "edgekd_version")}
    save_checkpoint(path, {**payload, "state_dict": state, "data": data})
    return path


def test_loaded_edgekd_teacher_with_permuted_labels_stops_before_kd(
    trained_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Any teacher from a file is checked on val, an edgekd checkpoint too: one line naming the
    likely cause, exit 2, nothing written; distill.allow_weak_teacher=true starts KD anyway."""
    over = {**FAST, "teacher.epochs": 0}
    # the same file as is: well above chance, loads
    summary = distill(out=tmp_path / "ok", set=tiny_overrides(**over, **{"teacher.checkpoint": str(trained_teacher)}))
    assert summary["teacher"]["val_acc"] > 0.5
    capsys.readouterr()
    for relabel, cause in (
        (True, r"Its classes are in another order \(9, 0, 1, 2, …; the data's: 0, 1, 2, 3, …\)"),
        (False, r"Likely causes: its labels mean other classes than the data's .*other preprocessing\)"),
    ):
        path = _permuted(trained_teacher, tmp_path / f"permuted_{relabel}.pt", relabel)
        out = tmp_path / f"r_{relabel}"
        args = ["-q", "distill", "--out", str(out)]
        args += [a for o in tiny_overrides(**over, **{"teacher.checkpoint": str(path)}) for a in ("--set", o)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert re.match(
            rf"edgekd: error: teacher {re.escape(str(path))} scores val acc [\d.]+ %: near chance \(10.0 % for 10 "
            rf"classes; under [\d.]+ % on \d+ val images is not clearly better than guessing\), so it would teach "
            rf"noise\. {cause}; distill.allow_weak_teacher=true starts KD anyway$",
            err,
        ), err
        assert not (out / "student.pt").exists() and not (out / "summary.json").exists()
    summary = distill(
        out=tmp_path / "allowed",
        set=tiny_overrides(**over, **{"teacher.checkpoint": str(path), "distill.allow_weak_teacher": "true"}),
    )
    assert "student" in summary and "scores val acc" in capsys.readouterr().err  # warned, not stopped


def test_weak_teacher_rule() -> None:
    from edgekd.train.summary import weak_teacher

    assert weak_teacher(0.17, 10, 144) and not weak_teacher(0.18, 10, 144)  # small val: 3σ of guessing
    assert weak_teacher(0.149, 10, 5000) and not weak_teacher(0.151, 10, 5000)  # 1.5× chance
    assert weak_teacher(0.549, 2, 1000) and not weak_teacher(0.551, 2, 1000)  # at most 5 points above chance
    assert weak_teacher(0.2, 2, 1000)  # below chance: a swapped label order
    assert not weak_teacher(0.02, 100, 5000) and weak_teacher(0.012, 100, 5000)


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag → [(step, value)] from TensorBoard event files (TFRecord framing: length, crc, data, crc)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack_from("<Q", data, pos)
            event = Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_scalars_mirror_metrics_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX", reason="tensorboardX is an optional extra (pip install 'edgekd[tensorboard]')")
    distill(out=tmp_path / "r", set=tiny_overrides(**{**FAST, "student.epochs": 2, "log.tensorboard": "true"}))
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(tmp_path / "r" / "tensorboard")
    assert {
        "teacher/loss",
        "teacher/val_acc",
        "student/loss",
        "student/kd_loss",
        "student/task_loss",
        "student/train_acc",
        "student/val_acc",
        "student/lr",
    } <= set(scalars), sorted(scalars)
    student = [r for r in records if r["stage"] == "student"]
    assert [step for step, _ in scalars["student/val_acc"]] == [r["epoch"] for r in student]
    assert [v for _, v in scalars["student/kd_loss"]] == pytest.approx([r["kd_loss"] for r in student], rel=1e-6)


VIEW_FACTORY = """
from torch import nn


class Flat(nn.Module):
    # a hand-written classifier that flattens an 8x8 map with .view, which NHWC strides reject
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        x = self.conv(x).relu()
        return self.fc(x.view(x.size(0), -1))


def build(num_classes, in_channels):
    return Flat(num_classes, in_channels)
"""


def test_a_view_flattening_model_trains_nchw_under_channels_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """channels-last is on by default (CPUs too): a model whose forward rejects NHWC strides runs
    NCHW (logged; a warning where runtime.channels_last=true asked for NHWC), never a traceback. The
    digits test split's one-channel array carries a channel stride of 1, which torch read as NHWC:
    such a model failed on it even with channels-last off."""
    (tmp_path / "byo_view_model.py").write_text(VIEW_FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("edgekd.ui._quiet", False)  # an earlier test's --quiet must not hide the log line
    arch = {"student.arch": "byo_view_model:build"}
    results = {}
    for setting in ("null", "true", "false"):
        capsys.readouterr()
        overrides = tiny_overrides(**FAST, **arch, **{"runtime.channels_last": setting})
        summary = distill(out=tmp_path / setting, set=overrides)
        results[setting] = summary["student"]["val_acc"]
        err = capsys.readouterr().err
        if setting == "null":
            assert "student: NCHW tensors (its forward rejects channels-last ones: view size" in err
        if setting == "true":
            assert "warning: runtime.channels_last=true, but the student does not run on channels-last" in err
    # the teacher (test_teacher) takes NHWC in both: the student's fallback is the same run either way
    a = load_checkpoint(tmp_path / "null" / "student.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "true" / "student.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert results["null"] == results["true"] and results["false"] > 0
