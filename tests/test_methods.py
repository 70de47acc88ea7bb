"""Every KD method end to end on digits with the tiny test models (seconds each).

Each run's student must be a plain model checkpoint, like any student: loadable into the bare
architecture, without teacher, regressor or ensemble weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint, load_model
from edgekd.config import load_config
from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.train.run import distill


def run(out: Path, **overrides: object) -> dict:
    return distill(out=out, set=tiny_overrides(**overrides))


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_plain_student(out: Path, name: str = "student", arch: str = "test_student") -> None:
    """``<name>.pt`` holds exactly the bare architecture's weights and nothing else."""
    model, ckpt = load_model(out / f"{name}.pt")
    assert ckpt["arch"] == arch and "train_state" not in ckpt
    bare = create_model(arch, 10, 1, (8, 8))
    assert set(ckpt["state_dict"]) == set(bare.state_dict())
    bare.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        assert bare(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.fixture(scope="module")
def teacher_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny teacher that the loss-variant runs share (loaded, not retrained)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(out, **{"teacher.epochs": 3, "student.epochs": 1, "distill.baseline": "false"})
    return out / "teacher.pt"


# -- Hinton variants ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kd_soft", "kd_mse"])
def test_loss_variants_train_a_plain_student(method: str, teacher_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / method
    summary = run(
        out,
        **{
            "distill.method": method,
            "teacher.checkpoint": str(teacher_pt),
            "teacher.epochs": 0,
            "distill.baseline": "false",
        },
    )
    assert summary["distill"]["method"] == method
    kd = [r for r in metrics(out) if r["stage"] == "student"]
    assert len(kd) == 2 and all(r["kd_loss"] > 0 for r in kd)
    if method == "kd_soft":  # α = 1: the loss is the soft term alone
        assert all(r["loss"] == pytest.approx(r["kd_loss"], rel=1e-5) for r in kd)
    assert load_checkpoint(out / "student.pt")["method"] == method
    assert_plain_student(out)


def test_kd_sigmoid_trains_teacher_and_baseline_with_bce(tmp_path: Path) -> None:
    out = tmp_path / "sigmoid"
    run(out, **{"distill.method": "kd_sigmoid", "teacher.epochs": 1, "student.epochs": 1})
    assert load_checkpoint(out / "teacher.pt")["method"] == "bce"  # soft targets σ(z_t/T) need a sigmoid teacher
    assert load_checkpoint(out / "baseline.pt")["method"] == "bce"
    assert load_checkpoint(out / "student.pt")["method"] == "kd_sigmoid"
    alpha = load_config(out / "config.yaml").distill.alpha
    rows = [r for r in metrics(out) if r["stage"] == "student" and "kd_loss" in r]
    assert rows and all(r["kd_loss"] > 0 for r in rows)
    # the logged loss is (1-λ)·BCE + λ·soft term, epoch means of both (λ = distill.alpha)
    assert all(r["loss"] == pytest.approx((1 - alpha) * r["task_loss"] + alpha * r["kd_loss"], abs=2e-6) for r in rows)
    assert_plain_student(out)


# -- FitNets ------------------------------------------------------------------------------------

FITNETS = {
    "distill.method": "fitnets",
    "distill.fitnets.hint_layer": "features.5",
    "distill.fitnets.guided_layer": "features.5",
}


def test_fitnets_two_stage(tmp_path: Path) -> None:
    out = tmp_path / "fitnets"
    summary = run(
        out, **FITNETS, **{"distill.fitnets.hint_epochs": 2, "teacher.epochs": 1, "distill.baseline": "false"}
    )
    records = metrics(out)
    assert [(r["stage"], r["epoch"]) for r in records] == [
        ("teacher", 1),
        ("student_hint", 1),
        ("student_hint", 2),
        ("student", 1),
        ("student", 2),
    ]
    hint = [r for r in records if r["stage"] == "student_hint"]
    assert all("hint_loss" in r and "kd_loss" not in r for r in hint)
    assert hint[1]["hint_loss"] < hint[0]["hint_loss"]  # the regressor and lower layers learn the hint
    assert all("kd_loss" in r and "hint_loss" not in r for r in records if r["stage"] == "student")  # stage 2: KD only
    assert summary["hint"]["epochs"] == 2 and summary["hint"]["hint_loss"] == hint[-1]["hint_loss"]

    # stage 1 trained the lower part only: layers after the guided one are still as initialized
    torch.manual_seed(0)
    init = create_model("test_student", 10, 1, (8, 8)).state_dict()
    hinted = load_checkpoint(out / "student_hint.pt")["state_dict"]
    assert not torch.equal(hinted["features.0.weight"], init["features.0.weight"])
    assert not torch.equal(hinted["features.4.weight"], init["features.4.weight"])
    assert torch.equal(hinted["fc.weight"], init["fc.weight"]) and torch.equal(hinted["fc.bias"], init["fc.bias"])
    # …and stage 2 started from those weights, then trained the whole student
    final = load_checkpoint(out / "student.pt")["state_dict"]
    assert not torch.equal(final["fc.weight"], init["fc.weight"])

    # the regressor never reaches a saved model; it lives in the resumable training state only
    assert_plain_student(out)
    assert_plain_student(out, "student_hint")
    state = load_checkpoint(out / "student_hint_last.pt")["train_state"]["method"]
    assert any(k.startswith("regressor.") for k in state)


def test_fitnets_single_stage_with_resize(tmp_path: Path) -> None:
    # guided features.2 is 4×8×8, hint features.6 is 32×4×4: 3×3 conv to 32 channels, then pooled to 4×4
    out = tmp_path / "fitnets1"
    run(
        out,
        **{
            **FITNETS,
            "distill.fitnets.guided_layer": "features.2",
            "distill.fitnets.hint_layer": "features.6",
            "distill.fitnets.hint_mode": "single_stage",
            "distill.fitnets.hint_weight": 0.5,
            "teacher.epochs": 1,
            "student.epochs": 1,
            "distill.baseline": "false",
        },
    )
    student = [r for r in metrics(out) if r["stage"] == "student"]
    assert all({"hint_loss", "kd_loss", "task_loss"} <= set(r) for r in student)
    assert not (out / "student_hint.pt").exists()
    assert_plain_student(out)


def test_fitnets_unknown_layer_fails_before_training(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    with pytest.raises(ConfigError) as err:
        run(out, **{**FITNETS, "distill.fitnets.hint_layer": "layer9"})
    message = str(err.value)
    assert "distill.fitnets.hint_layer: the teacher (test_teacher) has no module 'layer9'" in message
    assert "valid paths: features, features.0" in message and "fc" in message
    assert not list(out.glob("teacher*.pt"))  # nothing was trained
    with pytest.raises(ConfigError, match="needs distill.fitnets.hint_layer and distill.fitnets.guided_layer"):
        run(tmp_path / "bad2", **{"distill.method": "fitnets"})


def test_fitnets_regressor_shapes() -> None:
    from edgekd.train.fitnets import build_regressor, match_spatial

    conv = build_regressor(torch.Size([2, 4, 8, 8]), torch.Size([2, 32, 4, 4]), "conv1x1")
    assert conv.kernel_size == (1, 1) and conv.out_channels == 32
    assert match_spatial(torch.ones(2, 32, 8, 8), (4, 4)).shape == (2, 32, 4, 4)
    assert match_spatial(torch.ones(2, 32, 2, 2), (4, 4)).shape == (2, 32, 4, 4)
    assert isinstance(build_regressor(torch.Size([2, 16]), torch.Size([2, 64]), "conv3x3"), torch.nn.Linear)
    with pytest.raises(ConfigError, match="pick two convolutional"):
        build_regressor(torch.Size([2, 16]), torch.Size([2, 8, 4, 4]), "conv3x3")


# -- TAKD ---------------------------------------------------------------------------------------

TAKD = {
    "distill.method": "takd",
    "distill.takd.assistants": "[test_teacher]",
    "teacher.arch": "test_teacher",
    "teacher.kwargs": "{width: 24}",
    "teacher.epochs": 2,
}


@pytest.fixture(scope="module")
def takd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("takd") / "chain"
    run(out, **TAKD)
    return out


def test_takd_chain_links(takd_run: Path) -> None:
    summary = json.loads((takd_run / "summary.json").read_text())
    links = summary["links"]
    assert [(r["name"], r["teacher"], r["arch"]) for r in links] == [
        ("ta1", "teacher", "test_teacher"),
        ("student", "ta1", "test_student"),
    ]
    for r in links:
        for key in ("arch", "params", "macs", "val_acc", "test_acc", "epochs", "wall_s"):
            assert key in r, key
    assert links[-1]["test_acc"] == summary["student"]["test_acc"]
    assert summary["teacher"]["params"] > links[0]["params"] > links[1]["params"]  # width 24 > 16 > 4
    for name in ("teacher", "ta1", "student", "baseline"):
        assert (takd_run / f"{name}.pt").is_file() and (takd_run / f"{name}_last.pt").is_file()
    assert_plain_student(takd_run, "ta1", "test_teacher")
    assert_plain_student(takd_run)
    assert set(summary["wall_s"]) >= {"teacher", "ta1", "student", "baseline", "total"}


def test_takd_resumes_across_links(takd_run: Path, tmp_path: Path) -> None:
    """Interrupt inside the TA link, resume: the chain ends exactly as the uninterrupted one."""
    out = tmp_path / "interrupted"

    def stop(record: dict, history: list) -> None:
        if record["stage"] == "ta1" and record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(out=out, set=tiny_overrides(**TAKD), on_epoch=[stop])
    assert (out / "teacher.pt").is_file() and not (out / "ta1.pt").exists()
    summary = distill(out=out, resume=True)
    reference = json.loads((takd_run / "summary.json").read_text())
    assert [(r["name"], r["val_acc"], r["test_acc"]) for r in summary["links"]] == [
        (r["name"], r["val_acc"], r["test_acc"]) for r in reference["links"]
    ]
    a, b = load_checkpoint(out / "student.pt")["state_dict"], load_checkpoint(takd_run / "student.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_takd_auto_picks_the_accuracy_midpoint(tmp_path: Path) -> None:
    from edgekd.train.takd import pick_assistant

    cands = [{"val_acc": 0.9, "params": 50}, {"val_acc": 0.72, "params": 30}, {"val_acc": 0.68, "params": 10}]
    best, midpoint = pick_assistant(cands, 0.95, 0.5)
    assert midpoint == pytest.approx(0.725)
    assert best == 1  # |0.72 − 0.725| beats |0.68 − 0.725| and |0.9 − 0.725|; size plays no part
    assert (
        pick_assistant([{"val_acc": 0.7, "params": 9}, {"val_acc": 0.8, "params": 3}], 1.0, 0.5)[0] == 1
    )  # tie: smaller

    out = tmp_path / "auto"
    summary = run(
        out,
        **{
            **TAKD,
            "distill.takd.assistants": "[test_teacher, test_student]",
            "distill.takd.ta_select": "auto",
            "teacher.epochs": 1,
            "student.epochs": 1,
        },
    )
    sel = summary["ta_select"]
    mid = (summary["teacher"]["val_acc"] + summary["baseline"]["val_acc"]) / 2
    assert sel["midpoint_val_acc"] == pytest.approx(mid, abs=1e-6)
    cands = [r for r in summary["links"] if r["role"] == "candidate"]
    assert [r["teacher"] for r in cands] == ["teacher", "teacher"] and sum(r["chosen"] for r in cands) == 1
    chosen = next(r for r in cands if r["chosen"])
    assert chosen["name"] == sel["chosen"] and abs(chosen["val_acc"] - mid) == min(
        abs(r["val_acc"] - mid) for r in cands
    )
    assert summary["links"][-1] == {
        **summary["student"],
        "name": "student",
        "teacher": sel["chosen"],
        "role": "student",
    }
    with pytest.raises(ConfigError, match="needs the no-KD student's accuracy"):
        run(tmp_path / "nobase", **{**TAKD, "distill.takd.ta_select": "auto", "distill.baseline": "false"})
    with pytest.raises(ConfigError, match="needs distill.takd.assistants"):
        run(tmp_path / "noassist", **{"distill.method": "takd"})


# -- ensemble -----------------------------------------------------------------------------------


def test_ensemble_of_seeds_then_of_checkpoints(tmp_path: Path) -> None:
    from edgekd.data import load_dataset
    from edgekd.data.loader import Batches
    from edgekd.train.evaluate import predict_logits

    out = tmp_path / "seeds"
    summary = run(
        out,
        **{
            "distill.method": "ensemble",
            "distill.ensemble.teacher_seeds": "[0, 5]",
            "teacher.epochs": 1,
            "student.epochs": 1,
        },
    )
    members = summary["teachers"]
    assert [(m["name"], m["seed"]) for m in members] == [("teacher1", 0), ("teacher2", 5)]
    assert members[0]["val_acc"] != members[1]["val_acc"]  # different seeds, different teachers
    ens = summary["teacher"]
    assert ens["arch"] == "ensemble(2×test_teacher)" and ens["params"] == 2 * members[0]["params"]
    # the reported ensemble accuracy is that of the averaged probabilities
    cfg = load_config(out / "config.yaml")
    data = load_dataset(cfg.data, log=lambda m: None)
    val = Batches(data.val, data.mean, data.std, 512)
    probs = sum(torch.softmax(predict_logits(load_model(out / f"teacher{i}.pt")[0], val), 1) for i in (1, 2))
    assert ens["val_acc"] == pytest.approx(float((probs.argmax(1).numpy() == data.val.labels).mean()), abs=1e-6)
    assert not (out / "teacher.pt").exists()
    assert_plain_student(out)

    loaded = run(
        tmp_path / "loaded",
        **{
            "distill.method": "ensemble",
            "teacher.epochs": 0,
            "student.epochs": 1,
            "distill.baseline": "false",
            "distill.ensemble.teacher_checkpoints": f"[{out / 'teacher1.pt'}, {out / 'teacher2.pt'}]",
        },
    )
    assert [m["test_acc"] for m in loaded["teachers"]] == [m["test_acc"] for m in members]
    assert all(m["epochs"] == 0 for m in loaded["teachers"]) and loaded["teacher"]["val_acc"] == ens["val_acc"]
    with pytest.raises(ConfigError, match="two or more members"):
        run(tmp_path / "one", **{"distill.method": "ensemble", "distill.ensemble.teachers": "[test_teacher]"})


# -- transfer set -------------------------------------------------------------------------------


def test_transfer_set_adds_unlabeled_images(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )  # another size: resized
    out = tmp_path / "transfer"
    summary = run(
        out,
        **{"distill.method": "transfer", "distill.transfer.set": str(folder), "teacher.epochs": 1, "student.epochs": 1},
    )
    labeled = summary["data"]["sizes"]["train"]
    assert summary["transfer"] == {"root": str(folder), "unlabeled": 100, "labeled": labeled}
    assert load_checkpoint(out / "student.pt")["data"]["sizes"]["train"] == labeled + 100
    assert load_checkpoint(out / "baseline.pt")["data"]["sizes"]["train"] == labeled  # no teacher: labels only
    student = next(r for r in metrics(out) if r["stage"] == "student")
    alpha = load_config(out / "config.yaml").distill.alpha
    assert student["kd_loss"] > 0 and student["loss"] == pytest.approx(
        (1 - alpha) * student["task_loss"] + alpha * student["kd_loss"], abs=2e-6
    )
    assert_plain_student(out)

    alone = run(
        tmp_path / "alone",
        **{
            "distill.method": "transfer",
            "distill.transfer.set": str(folder),
            "distill.transfer.labeled": "false",
            "teacher.epochs": 1,
            "student.epochs": 1,
            "distill.baseline": "false",
        },
    )
    assert alone["transfer"]["labeled"] == 0
    assert all(r["task_loss"] == 0 for r in metrics(tmp_path / "alone") if r["stage"] == "student")  # soft term only
    with pytest.raises(ConfigError, match="needs distill.transfer.set"):
        run(tmp_path / "none", **{"distill.method": "transfer"})


# -- domain adaptation --------------------------------------------------------------------------


def test_domain_adaptation_digits_to_inverted_digits(tmp_path: Path) -> None:
    out = tmp_path / "domain"
    summary = run(
        out,
        **{
            "distill.method": "domain",
            "source.name": "digits",
            "data.shift": "invert",
            "teacher.epochs": 3,
            "student.epochs": 1,
            "distill.domain.finetune_epochs": 1,
        },
    )
    dom = summary["domains"]
    assert dom["source"]["shift"] == "none" and dom["target"]["shift"] == "invert"
    for side in ("source", "target"):
        assert set(dom[side]["accuracy"]) == {"teacher_source", "teacher", "student", "baseline"}
    acc = dom["source"]["accuracy"]["teacher_source"]
    assert acc["val_acc"] > 0.5  # learned its own domain …
    assert dom["target"]["accuracy"]["teacher_source"]["val_acc"] < acc["val_acc"]  # … and the shift hurts it
    assert summary["teacher"]["val_acc"] == dom["target"]["accuracy"]["teacher"]["val_acc"]  # top level = target
    assert summary["teacher_source"]["trained_on"] == "source"
    # the student is a plain model of the TARGET domain
    ckpt = load_checkpoint(out / "student.pt")
    assert ckpt["data"]["shift"] == "invert" and ckpt["data"]["sizes"]["train"] == 2 * summary["data"]["sizes"]["train"]
    assert_plain_student(out)
    assert load_checkpoint(out / "teacher.pt")["data"].get("shift") is None  # the teacher learned on the source
    with pytest.raises(ConfigError, match="needs a `source` data section"):
        run(tmp_path / "nosource", **{"distill.method": "domain"})


# -- config ↔ method ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            {"distill.fitnets.hint_layer": "layer2"},
            "distill.fitnets.hint_layer does nothing with distill.method=kd (it is read by: fitnets)",
        ),
        (
            {"distill.takd.assistants": "[plain6]"},
            "distill.takd.assistants does nothing with distill.method=kd (it is read by: takd)",
        ),
        ({"source.name": "digits"}, "the `source` data section does nothing with distill.method=kd"),
        (
            {
                "distill.method": "fitnets",
                "distill.fitnets.hint_layer": "a",
                "distill.fitnets.guided_layer": "b",
                "distill.fitnets.hint_epochs": 0,
            },
            "needs distill.fitnets.hint_epochs of 1",
        ),
        (
            {"distill.method": "ensemble", "distill.ensemble.teacher_seeds": "[0, 1]", "teacher.checkpoint": "x.pt"},
            "as distill.ensemble.teacher_checkpoints",
        ),
        (
            {"distill.method": "domain", "source.name": "digits", "distill.domain.source_labels": "false"},
            "there are none",
        ),
    ],
)
def test_method_keys_are_checked_before_anything_runs(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "run", **overrides)
    assert message in str(err.value)
    assert not (tmp_path / "run").exists()
