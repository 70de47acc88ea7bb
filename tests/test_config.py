"""Config: YAML defaults, --set overrides, validation with suggestions, round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgekd.config import Config, describe_keys, diff, dump_yaml, load_config
from edgekd.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "teacher: {arch: resnet14, epochs: 3}\ndistill: {temperature: 2}\n")
    cfg = load_config(path, ["distill.temperature=8", "student.kwargs.width=2", "data.mean=[0.5]", "data.std=[0.25]"])
    assert cfg.name == "c"  # from the file name
    assert cfg.teacher.arch == "resnet14" and cfg.teacher.epochs == 3
    assert cfg.distill.temperature == 8.0 and isinstance(cfg.distill.temperature, float)
    assert cfg.student.kwargs == {"width": 2}
    assert cfg.data.mean == (0.5,)
    assert cfg.distill.alpha == Config().distill.alpha  # untouched default


def test_yaml_12_booleans_keep_choice_strings(tmp_path: Path) -> None:
    """`off`/`on`/`yes`/`no` are strings (YAML 1.2), so `runtime.amp=off` means the choice 'off'."""
    cfg = load_config(None, ["runtime.amp=off", "distill.baseline=false"])
    assert cfg.runtime.amp == "off" and cfg.distill.baseline is False
    with pytest.raises(ConfigError, match="distill.baseline expects true or false, got 'no'"):
        load_config(None, ["distill.baseline=no"])
    assert load_config(write(tmp_path, "runtime: {amp: off}\n")).runtime.amp == "off"


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(None, ["name=rt", "student.milestones=[3, 6]", "student.schedule=step", "student.lr=1e-3"])
    assert cfg.student.lr == 0.001  # YAML reads 1e-3 as a string; the schema makes it a float
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert diff(cfg, again) == []
    assert again.student.milestones == (3, 6)


@pytest.mark.parametrize(
    "override,message",
    [
        ("distill.temprature=4", "unknown key 'distill.temprature'; did you mean 'distill.temperature'?"),
        ("techer.arch=plain2", "unknown key 'techer'; did you mean 'teacher'?"),
        ("distill.temperature=hot", "distill.temperature expects a number, got 'hot'"),
        ("teacher.epochs=2.5", "teacher.epochs expects an integer"),
        ("distill.baseline=maybe", "distill.baseline expects true or false"),
        ("student.optimizer=adam", "student.optimizer: 'adam' is not one of sgd, adamw; did you mean 'adamw'?"),
        ("distill.alpha=1.5", "distill.alpha must be in [0, 1]"),
        ("student.bn_momentum=0", "student.bn_momentum must be in (0, 1]"),
        ("teacher.bn_momentum=1.5", "teacher.bn_momentum must be in (0, 1]"),
        ("student.bn_momentum=.nan", "student.bn_momentum must be a finite number"),
        ("data.mean=[0.5]", "set data.mean and data.std together"),
        ("notakey", "--set expects KEY=VALUE"),
        ("distill.temperature.x=1", "distill.temperature expects a number, got {'x': 1}"),
        # an exponent too many was clamped to the data's size, silently
        *(
            (
                f"export.{key}_samples={big}",
                f"config: export.{key}_samples must be an integer from 1 to 1000000, got {big}",
            )
            for key in ("calibration", "eval", "parity")
            for big in (1_000_001, 10**12)
        ),
        ("export.eval_samples=0", "config: export.eval_samples must be an integer from 1 to 1000000, got 0"),
        # sizes of allocations and process counts: a MemoryError or a fork storm minutes later
        ("data.image_size=1000000", "config: data.image_size must be an integer from 1 to 4096, got 1000000"),
        ("data.batch_size=10000000", "config: data.batch_size must be an integer from 1 to 65536, got 10000000"),
        ("data.eval_batch_size=100000", "config: data.eval_batch_size must be an integer from 1 to 65536"),
        ("data.samples=1000000000", "config: data.samples must be an integer from 10 to 1000000"),
        ("data.views=100000", "config: data.views must be an integer from 1 to 1000, got 100000"),
        ("data.workers=100000", "config: data.workers must be an integer from 0 to 64, got 100000"),
        ("data.train_limit=1000000000000", "config: data.train_limit must be an integer from 1 to 2147483647"),
        ("data.view_seed=99999999999", "config: data.view_seed must be an integer from 0 to 4294967295"),
    ],
)
def test_bad_overrides_explain_themselves(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_export_sample_counts_up_to_their_bound_load() -> None:
    cfg = load_config(None, [f"export.{k}_samples=1000000" for k in ("calibration", "eval", "parity")])
    assert cfg.export.calibration_samples == cfg.export.eval_samples == cfg.export.parity_samples == 1_000_000
    assert load_config(None, ["export.parity_samples=null"]).export.parity_samples is None  # the whole test split


def test_override_below_a_value_set_in_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'temperature' is a value, not a section"):
        load_config(write(tmp_path, "distill: {temperature: 2}\n"), ["distill.temperature.x=1"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "teacher: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping of keys at the top level"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="unknown key 'student.archh'"):
        load_config(write(tmp_path, "student: {archh: plain2}\n"))


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_every_key_is_documented() -> None:
    rows = describe_keys()
    keys = [k for k, _, _ in rows]
    for required in [
        "data.name",
        "data.root",
        "teacher.arch",
        "teacher.epochs",
        "teacher.checkpoint",
        "student.arch",
        "student.epochs",
        "distill.temperature",
        "distill.alpha",
        "distill.baseline",
        "seed",
    ]:
        assert required in keys
    undocumented = [k for k, _, h in rows if not h]
    assert undocumented == []


def test_shipped_configs_load() -> None:
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        load_config(path)


def test_method_sections_and_the_old_flat_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each method's keys live in its section (distill.fitnets.*, …); the flat keys of older configs
    and run folders still load, moved there, with one note on stderr; the resolved config is written
    in the new layout."""
    new = load_config(
        None, ["name=c", "distill.fitnets.hint_layer=layer2", "distill.dkd.beta=3", "distill.transfer.set=x"]
    )
    assert capsys.readouterr().err == ""  # the new layout: no note
    old = load_config(
        write(tmp_path, "distill:\n  hint_layer: layer2\n  dkd_beta: 3\n  transfer_set: x\n  temperature: 4\n")
    )
    assert diff(old, new) == [] and old.distill.fitnets.hint_layer == "layer2" and old.distill.dkd.beta == 3.0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "distill.hint_layer → distill.fitnets.hint_layer" in err[0], err
    assert "distill.dkd_beta → distill.dkd.beta" in err[0] and "distill.transfer_set → distill.transfer.set" in err[0]
    saved = dump_yaml(old)
    assert "  fitnets:\n    hint_layer: layer2\n" in saved and "hint_layer" not in saved.split("fitnets:")[0]
    assert diff(load_config(write(tmp_path, saved)), new) == []  # the saved layout reads back, with no note
    assert capsys.readouterr().err == ""
    assert load_config(None, ["distill.assistants=[plain6]"]).distill.takd.assistants == ("plain6",)  # --set too
    with pytest.raises(ConfigError, match="distill.hint_layer .the old name of distill.fitnets.hint_layer. and"):
        load_config(None, ["distill.hint_layer=a", "distill.fitnets.hint_layer=b"])


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "distill.fitnets.hint_layr=x",
            "unknown key 'distill.fitnets.hint_layr'; did you mean 'distill.fitnets.hint_layer'?",
        ),
        ("distill.hint_layr=x", "unknown key 'distill.hint_layr'; did you mean 'distill.fitnets.hint_layer'?"),
        ("distill.dkd.bta=1", "unknown key 'distill.dkd.bta'; did you mean 'distill.dkd.beta'?"),
        ("distill.fitnets.hint_mode=three", "distill.fitnets.hint_mode: 'three' is not one of two_stage, single_stage"),
        ("distill.takd=3", "distill.takd must be a mapping of keys"),
    ],
)
def test_bad_keys_in_a_method_section(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_bn_momentum_is_set_on_every_batchnorm_and_recorded(tmp_path: Path, capsys, monkeypatch) -> None:
    """student.bn_momentum replaces torchvision MobileNetV3's 0.01 on every BN layer; the stage that
    builds the model applies it (the teacher's, None, leaves its own) and config.yaml records it."""
    import torch
    import yaml

    import edgekd.models.layers as layers
    from conftest import tiny_overrides
    from edgekd.cli import main
    from edgekd.models import create_model
    from edgekd.models.layers import set_bn_momentum
    from edgekd.train.run import distill

    model = create_model("torchvision.models:mobilenet_v3_small", 10, 3, (32, 32))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and {m.momentum for m in bns} == {0.01}
    assert set_bn_momentum(model, None) == 0 and {m.momentum for m in bns} == {0.01}
    assert set_bn_momentum(model, 0.1) == len(bns) and {m.momentum for m in bns} == {0.1}

    applied: list[tuple[int, float | None]] = []

    def spy(model, momentum):
        applied.append((set_bn_momentum(model, momentum), momentum))
        return applied[-1][0]

    monkeypatch.setattr(layers, "set_bn_momentum", spy)
    out = tmp_path / "run"
    distill(out=out, set=tiny_overrides(**{"distill.baseline": "false", "student.bn_momentum": 0.5}))
    assert applied == [(2, 0.5)]  # the student's two BN layers; the teacher (bn_momentum None) untouched
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["student"]["bn_momentum"] == 0.5 and resolved["teacher"]["bn_momentum"] is None

    capsys.readouterr()
    code = main(["distill", "--out", str(tmp_path / "bad"), "--set", "student.bn_momentum=2"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and "student.bn_momentum" in errors[0], err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "key, low",
    [
        ("teacher.epochs", 0),  # 0: teacher.checkpoint is loaded
        ("student.epochs", 1),
        ("student.lookahead_steps", 0),
        ("distill.qat.epochs", 0),
        ("distill.qat.observer_epochs", 1),
        ("distill.qat.bn_epochs", 0),
        ("distill.qat.calibration_batches", 1),
        ("distill.fitnets.hint_epochs", 0),
        ("distill.domain.finetune_epochs", 0),
    ],
)
def test_step_counts_have_both_bounds(key: str, low: int) -> None:
    """10¹⁵ epochs was accepted: a run that never finishes instead of one line."""
    for bad in (low - 1, 100_001, 10**15):
        with pytest.raises(ConfigError, match=rf"config: {re.escape(key)} must be an integer from {low} to 100000"):
            load_config(None, [f"{key}={bad}"])
