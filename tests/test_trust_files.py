"""A file is data, never code; numbers that are not numbers are refused; every JSON written is strict.

Each planted payload would create a marker file if anything in it were imported or called; the
tests assert the refusal *and* that the marker never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, tiny_overrides
from edgekd.checkpoint import load_checkpoint, load_model, model_payload, save_checkpoint
from edgekd.config import ConfigError, load_config
from edgekd.errors import CheckpointError, DataError, EdgekdError, first_line
from edgekd.models import create_model

DIGITS = {
    "num_classes": 10,
    "in_channels": 1,
    "image_size": [8, 8],
    "mean": [0.3],
    "std": [0.3],
    "task": "classification",
}


def plant_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """A module that writes the marker when imported and when its factory is called."""
    marker = tmp_path / f"{name}.marker"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def make(num_classes=10, **kwargs):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
        "    return torch.nn.Linear(64, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def planted_checkpoint(path: Path, arch: str, kwargs: dict | None = None) -> Path:
    model = create_model("test_student", 10, 1, (8, 8))
    save_checkpoint(path, model_payload(model, arch, kwargs or {}, DIGITS, "student"))
    return path


def test_factory_named_in_a_checkpoint_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = plant_factory(tmp_path, monkeypatch, "planted_ckpt_mod")
    ckpt = planted_checkpoint(tmp_path / "student.pt", "planted_ckpt_mod:make")
    with pytest.raises(CheckpointError, match="names the factory 'planted_ckpt_mod:make'.*never imported"):
        load_model(ckpt)  # edgekd.load_model: the public API
    from edgekd.runtimes.torch_runner import TorchRunner

    with pytest.raises(CheckpointError, match="never imported"):
        TorchRunner(ckpt, None)  # bench's pytorch rows
    assert not marker.exists() and "planted_ckpt_mod" not in sys.modules


def test_a_factory_the_caller_names_is_honored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = plant_factory(tmp_path, monkeypatch, "vouched_mod")
    model = create_model("vouched_mod:make", 10, 1, (8, 8))
    save_checkpoint(tmp_path / "m.pt", model_payload(model, "vouched_mod:make", {}, DIGITS, "student"))
    loaded, ckpt = load_model(tmp_path / "m.pt", arch="vouched_mod:make")
    assert ckpt["arch"] == "vouched_mod:make" and isinstance(loaded, torch.nn.Linear)
    assert marker.read_text() == "called"


def test_distill_teacher_checkpoint_naming_a_factory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.train.run import distill

    marker = plant_factory(tmp_path, monkeypatch, "planted_teacher_mod")
    ckpt = planted_checkpoint(tmp_path / "teacher.pt", "planted_teacher_mod:make")
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match="never imported"):
        distill(out=out, set=tiny_overrides(**{"teacher.checkpoint": str(ckpt), "teacher.epochs": 0}))
    assert not marker.exists() and not out.exists()


def test_export_refuses_a_run_whose_checkpoint_names_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.atomic import write_json, write_text
    from edgekd.config import dump_yaml
    from edgekd.exporters.export import export

    marker = plant_factory(tmp_path, monkeypatch, "planted_export_mod")
    run = tmp_path / "run"
    run.mkdir()
    write_text(run / "config.yaml", dump_yaml(load_config(None, tiny_overrides(**{"export.models": "[student]"}))))
    write_json(run / "summary.json", {"student": {}})
    planted_checkpoint(run / "student.pt", "planted_export_mod:make")
    with pytest.raises(CheckpointError, match="never imported"):
        export(run=run, out=tmp_path / "bundle")
    assert not marker.exists() and not (tmp_path / "bundle").exists()


def test_checkpoint_model_arguments_must_be_plain(tmp_path: Path) -> None:
    ckpt = planted_checkpoint(tmp_path / "k.pt", "test_student", {"width": torch.ones(2)})
    with pytest.raises(CheckpointError, match=r"not plain data \(kwargs.width: a Tensor"):
        load_model(ckpt)
    unknown = planted_checkpoint(tmp_path / "u.pt", "test_studnet")
    with pytest.raises(CheckpointError, match="did you mean 'test_student'"):
        load_model(unknown)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"data": "x"}, "not plain data (data must be a mapping, it is a str)"),
        ({"kwargs": "x"}, "not plain data (kwargs must be a mapping, it is a str)"),
        ({"data": {**DIGITS, "std": [0.0]}}, "data.std[0] must be a number above 0, got 0"),
        ({"data": {**DIGITS, "std": [-0.5]}}, "data.std[0] must be a number above 0"),
        ({"data": {**DIGITS, "mean": [0.1, 0.2]}}, "data.mean must hold one number per input channel (1)"),
        ({"data": {**DIGITS, "image_size": "8x8"}}, "data.image_size must be [height, width]"),
        ({"data": {**DIGITS, "num_classes": "10"}}, "data.num_classes must be an integer"),
        # in no weight's shape: the meta-device build cannot catch it, every example input would allocate it
        ({"data": {**DIGITS, "image_size": [8, 10**6]}}, "data.image_size[1] must be an integer from 1 to 4096"),
        ({"data": {k: v for k, v in DIGITS.items() if k != "std"}}, "lacks data.std"),
    ],
    ids=[
        "data-a-string",
        "kwargs-a-string",
        "std-zero",
        "std-negative",
        "mean-too-long",
        "size-a-string",
        "classes-a-string",
        "size-huge",
        "no-std",
    ],
)
def test_checkpoint_model_description_is_checked(tmp_path: Path, change: dict, needle: str) -> None:
    """Every reader of a checkpoint relies on its data/kwargs fields: a string there was an
    AttributeError traceback, and a zero std "re-normalized" a teacher by a division by zero."""
    path = planted_checkpoint(tmp_path / "c.pt", "test_student")
    torch.save({**torch.load(path, weights_only=True), **change}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert needle in str(err.value)


def test_a_plain_pickle_is_one_line_without_torchs_warning(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """torch warns about the pickle protocol of a file it did not write, before it fails; the error
    line already says what the file is."""
    import warnings

    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    warnings.simplefilter("always")
    with pytest.raises(CheckpointError, match="not a PyTorch pickle stream"):
        load_checkpoint(path)
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


class _Planted:
    """Pickles as a call of ``os.system`` that would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_reader_runs_nothing(tmp_path: Path) -> None:
    from edgekd.config import DataConfig
    from edgekd.data import load_dataset

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "cifar.marker"
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, 20)],
        }
        if name == "data_batch_1":
            batch[b"batch_label"] = _Planted(marker)
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with pytest.raises(DataError, match=r"data_batch_1: it names (posix|os)\.system, which is not plain data"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def test_weights_only_refusal_says_what_the_file_is(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # a pickled module, not tensors
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "whole.pt")
    text = str(err.value).replace(str(tmp_path), "")
    assert "weights_only" not in text and "\x1b" not in text and "\n" not in text
    assert (
        "holds pickled Python objects" in text and "torch.nn.modules.linear.Linear" in text and "state_dict()" in text
    )


def test_error_lines_carry_no_escape_codes() -> None:
    from edgekd.errors import one_line

    assert first_line(RuntimeError("\x1b[1mbold\x1b[0m advice\nmore")) == "bold advice"
    assert one_line("a\x1b]0;title\x07b\r\nc") == "ab c"


@pytest.mark.parametrize(
    "override",
    [
        "distill.temperature=nan",
        "distill.alpha=.nan",
        "student.lr=inf",
        "teacher.weight_decay=-.inf",
        "student.momentum=NaN",
        "export.max_acc_drop=nan",
        "data.mean=[.nan]",
        "student.kwargs={width: .inf}",
    ],
)
def test_non_finite_settings_are_refused(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"config: {re.escape(key)}.*(finite|not a finite number)"):
        load_config(None, [override])


def test_cli_non_finite_setting_is_one_line(capsys: pytest.CaptureFixture) -> None:
    from edgekd.cli import main

    assert main(["distill", "--set", "distill.temperature=nan"]) == 2
    assert error_line(capsys.readouterr().err).startswith(
        "edgekd: error: config: distill.temperature must be a finite number"
    )


def test_json_writer_is_strict(tmp_path: Path) -> None:
    from edgekd.atomic import write_json

    with pytest.raises(ValueError, match=r"non-finite number at \.metrics\.acc\[1\]"):
        write_json(tmp_path / "x.json", {"metrics": {"acc": [0.5, float("nan")]}})
    assert not (tmp_path / "x.json").exists()


def test_every_json_file_goes_through_the_strict_writer() -> None:
    """No module writes JSON on its own (``json.dump`` to a file, ``write_text(json.dumps(…))``):
    they all call :func:`edgekd.atomic.write_json`, which refuses NaN."""
    offenders = []
    for folder in ("edgekd", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "atomic.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"json\.dump\(|write_text\(json\.dumps", line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}")
    assert not offenders, offenders


def test_nan_outputs_fail_parity() -> None:
    from edgekd.exporters.parity import Bounds, out_of_bounds, parity_metrics

    reference = np.eye(4, 3, dtype=np.float32)
    labels = np.array([0, 1, 2, 0])
    outputs = reference.copy()
    outputs[1, 2] = np.nan
    metrics = parity_metrics(outputs, reference, labels)
    problems = out_of_bounds("onnx", metrics, Bounds())
    assert problems and "1 outputs are NaN or infinite" in problems[0]
    assert metrics["max_abs_diff"] is None
    json.dumps(metrics, allow_nan=False)  # the manifest stays valid JSON
    assert out_of_bounds("onnx", parity_metrics(reference, reference, labels), Bounds()) == []


def error_line(err: str) -> str:
    """The one ``edgekd: error:`` line of a command's stderr (progress lines may precede it)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_callable_that_is_not_a_model_factory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(EdgekdError, match=r"'builtins:dict' returned a dict, not a torch.nn.Module"):
        create_model("builtins:dict", 10, 1, (8, 8))
    from edgekd.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "distill",
                "--out",
                str(out),
                *[x for s in tiny_overrides(**{"teacher.arch": "os:getcwd"}) for x in ("--set", s)],
            ]
        )
        == 2
    )
    assert "config: teacher.arch: model factory 'os:getcwd' returned a str" in error_line(capsys.readouterr().err)
    assert not out.exists()


def test_export_rebuilds_a_student_of_a_factory_its_run_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose config names a ``module:factory`` student (a torchvision model, say) exports its
    ``student.pt`` too: the parity run of the bundle's copy rebuilds it with the arch the run's config
    vouches for; opened without it, the same file is still refused."""
    from edgekd.atomic import write_json, write_text
    from edgekd.config import dump_yaml
    from edgekd.exporters.export import export
    from edgekd.runtimes import open_runner

    (tmp_path / "vouched_export_mod.py").write_text(
        "import torch\ndef make(num_classes=10, **kwargs):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    arch = "vouched_export_mod:make"
    run = tmp_path / "run"
    run.mkdir()
    overrides = tiny_overrides(**{"student.arch": arch, "export.models": "[student]", "export.formats": "[pytorch]"})
    write_text(run / "config.yaml", dump_yaml(load_config(None, overrides)))
    write_json(run / "summary.json", {"student": {}})
    save_checkpoint(run / "student.pt", model_payload(create_model(arch, 10, 1, (8, 8)), arch, {}, DIGITS, "student"))
    manifest = export(run=run, out=tmp_path / "bundle")
    assert manifest["metrics"]["student.pt"]["ok"]
    with pytest.raises(CheckpointError, match="never imported"):
        open_runner(tmp_path / "bundle" / "student.pt")
    assert open_runner(tmp_path / "bundle" / "student.pt", arch=arch).predict(
        np.zeros((2, 8, 8, 1), np.uint8)
    ).shape == (
        2,
        10,
    )


def synthetic_run(run: Path, **overrides: str) -> Path:
    """A run folder of a config and an empty summary, for export tests that plant their own checkpoints."""
    from edgekd.atomic import write_json, write_text
    from edgekd.config import dump_yaml

    run.mkdir()
    settings = {"export.models": "[student]", "export.formats": "[pytorch]", **overrides}
    write_text(run / "config.yaml", dump_yaml(load_config(None, tiny_overrides(**settings))))
    write_json(run / "summary.json", {"student": {}})
    return run


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_a_checkpoint_with_non_finite_weights_is_refused(
    tmp_path: Path, value: float, capsys: pytest.CaptureFixture
) -> None:
    """One NaN or inf weight made every output NaN: export crashed on an inf one (a TypeError in the
    parity check) and needed ~14 s of conversion to fail on a NaN one with a garbled XNNPACK message.
    Every reader goes through load_checkpoint, which refuses the file naming the tensor."""
    from edgekd.cli import main
    from edgekd.runtimes.torch_runner import TorchRunner

    path = planted_checkpoint(tmp_path / "student.pt", "test_student")
    ckpt = torch.load(path, weights_only=True)
    name = list(ckpt["state_dict"])[-1]
    ckpt["state_dict"][name].view(-1)[0] = value
    torch.save(ckpt, path)
    needle = f"{name} holds NaN or infinite values"
    for read in (load_checkpoint, load_model, lambda p: TorchRunner(p, None)):
        with pytest.raises(CheckpointError, match=re.escape(needle)):
            read(path)
    bare = tmp_path / "bare.pt"
    torch.save(ckpt["state_dict"], bare)  # a bare state_dict (student.checkpoint, teacher.checkpoint) too
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        load_checkpoint(bare)
    run = synthetic_run(tmp_path / "run")
    torch.save(ckpt, run / "student.pt")
    before = (run / "student.pt").read_bytes()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "bundle")]) == 2
    assert needle in error_line(capsys.readouterr().err)
    assert not (tmp_path / "bundle").exists() and (run / "student.pt").read_bytes() == before


def test_int8_outputs_that_are_not_finite_fail_parity(monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 file's error in output steps divided max |Δlogit| by the scale: None (NaN outputs)
    was a TypeError traceback instead of the failure the problems name."""
    import edgekd.runtimes
    from edgekd.exporters.parity import Bounds, check_parity

    reference = np.eye(4, 3, dtype=np.float32)

    class NaNRunner:
        format = "tflite_int8"
        out_scale = 0.1
        out = {"dtype": np.int8}

        def predict(self, images: np.ndarray) -> np.ndarray:
            return np.full_like(reference, np.nan)

    monkeypatch.setattr(edgekd.runtimes, "open_runner", lambda *args, **kwargs: NaNRunner())
    metrics = check_parity(Path("m.tflite"), np.zeros((4, 8, 8, 1), np.uint8), np.arange(4) % 3, reference, Bounds())
    assert not metrics["ok"] and "NaN or infinite" in metrics["problems"][0]
    assert metrics["max_abs_diff"] is None and metrics["max_abs_diff_steps"] is None
    json.dumps(metrics, allow_nan=False)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"width": 10**7}, "size mismatch for features.0.weight"),  # the real build asked for petabytes
        ({"width": 40}, "size mismatch for features.0.weight"),  # the real build was merely large and slow
        ({"width": "wide"}, "model 'test_student' rejected its arguments ['width']"),
        ({"depth": 3}, "model 'test_student' rejected its arguments ['depth']"),
    ],
    ids=["width-huge", "width-other", "width-a-string", "unknown-kwarg"],
)
def test_checkpoint_model_arguments_are_checked_on_meta_first(
    tmp_path: Path, kwargs: dict, needle: str, capsys: pytest.CaptureFixture
) -> None:
    """A checkpoint's kwargs are data: the model they describe is built on the meta device (shapes,
    no storage) and compared with the weights before the real one is built, so an edited width is
    one line at once, not a RuntimeError traceback after asking for 9e15 bytes."""
    from edgekd.cli import main

    path = planted_checkpoint(tmp_path / "student.pt", "test_student", kwargs)
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        load_model(path)
    run = synthetic_run(tmp_path / "run")
    planted_checkpoint(run / "student.pt", "test_student", kwargs)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "bundle")]) == 2
    assert needle in error_line(capsys.readouterr().err)
    assert not (tmp_path / "bundle").exists()


def test_a_factory_that_cannot_build_on_meta_is_built_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "no_meta_mod.py").write_text(
        "import torch\ndef make(num_classes=10, **kwargs):\n"
        "    torch.zeros(1).item()  # no meta kernel: data-dependent set-up\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    arch = "no_meta_mod:make"
    save_checkpoint(tmp_path / "m.pt", model_payload(create_model(arch, 10, 1, (8, 8)), arch, {}, DIGITS, "student"))
    model, _ = load_model(tmp_path / "m.pt", arch=arch)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_export_refuses_a_checkpoint_that_is_not_the_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A teacher.pt copied over student.pt exported as the student, exit 0, the manifest giving it
    the student's architecture, parameters and MACs (summary.json's). The role and architecture the
    checkpoint records must be the run's; nothing is written."""
    from edgekd.cli import main

    teacher = create_model("test_teacher", 10, 1, (8, 8))
    cases = {
        "role": ("test_teacher", "teacher", "holds a teacher model (test_teacher), not the run's student"),
        "arch": ("test_teacher", "student", "holds a test_teacher, but the run's student is a test_student"),
    }
    for name, (arch, role, needle) in cases.items():
        run = synthetic_run(tmp_path / name)
        save_checkpoint(run / "student.pt", model_payload(teacher, arch, {}, DIGITS, role))
        before = (run / "student.pt").read_bytes()
        assert main(["export", "--run", str(run), "--out", str(tmp_path / f"{name}-bundle")]) == 2
        assert needle in error_line(capsys.readouterr().err)
        assert not (tmp_path / f"{name}-bundle").exists() and (run / "student.pt").read_bytes() == before


def planted_qat_checkpoint(path: Path, arch: str, kwargs: dict, role: str) -> Path:
    """A student_qat.pt as the QAT stage writes it, in miniature: its meta (role, arch, kwargs, QAT
    graph layout) and the float student's tensors under the names the QAT graph gives them."""
    from edgekd.train.qat import QAT_GRAPH_VERSION

    model = create_model(arch, 10, 1, (8, 8))
    payload = model_payload(model, arch, kwargs, DIGITS, role, qat={"graph": QAT_GRAPH_VERSION})
    payload["state_dict"] = {f"graph.model.{k}": v for k, v in payload["state_dict"].items()}
    save_checkpoint(path, payload)
    return path


@pytest.mark.parametrize(
    "arch, kwargs, role, needle",
    [
        ("test_student", {}, "teacher", "holds a teacher model (test_student), not the run's student_qat"),
        ("test_teacher", {}, "student_qat", "holds a test_teacher, but the run's student_qat is a test_student"),
        ("test_student", {"width": 10**6}, "student_qat", "size mismatch for features.0.weight"),
        ("test_student", {"width": "wide"}, "student_qat", "model 'test_student' rejected its arguments ['width']"),
    ],
    ids=["role", "arch", "width-huge", "width-a-string"],
)
def test_export_checks_the_qat_checkpoint_like_the_others(
    tmp_path: Path, arch: str, kwargs: dict, role: str, needle: str, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    """student_qat.pt had only the NaN/inf check: another role's file was exported as the QAT row,
    and a width edited to 1e6 was built for real (asking for terabytes) after the other files were
    converted. Its role and architecture must be the run's QAT student's, and its float student is
    built on the meta device first: one line before the data loads, nothing written."""
    from edgekd.cli import main

    run = synthetic_run(tmp_path / "run", **{"export.formats": "[tflite_int8]"})
    planted_checkpoint(run / "student.pt", "test_student")
    planted_qat_checkpoint(run / "student_qat.pt", arch, kwargs, role)
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def no_data_first(*args, **kwargs):
        raise AssertionError("the data was loaded before student_qat.pt was checked")

    monkeypatch.setattr("edgekd.data.load_dataset", no_data_first)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "bundle")]) == 2
    line = error_line(capsys.readouterr().err)
    assert needle in line and "student_qat.pt" in line, line
    assert not (tmp_path / "bundle").exists() and {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_takes_a_teacher_checkpoint_of_its_own_arch(tmp_path: Path) -> None:
    """A run whose teacher came from teacher.checkpoint holds that file's architecture, whatever
    teacher.arch says; the manifest's params and MACs are the exported model's, not summary.json's."""
    from edgekd.atomic import write_json
    from edgekd.exporters.export import export
    from edgekd.models import count_params

    teacher = create_model("test_teacher", 10, 1, (8, 8))
    given = tmp_path / "given.pt"
    save_checkpoint(given, model_payload(teacher, "test_teacher", {}, DIGITS, "teacher"))
    overrides = {
        "teacher.arch": "resnet8",
        "teacher.checkpoint": str(given),
        "export.models": "[student, teacher]",
        "export.teacher_formats": "[pytorch]",
    }
    run = synthetic_run(tmp_path / "run", **overrides)
    write_json(run / "summary.json", {"student": {"params": 1, "macs": 1}, "teacher": {"arch": "test_teacher"}})
    planted_checkpoint(run / "student.pt", "test_student")
    save_checkpoint(run / "teacher.pt", model_payload(teacher, "test_teacher", {}, DIGITS, "teacher"))
    manifest = export(run=run, out=tmp_path / "bundle", allow_parity_failure=True)  # untrained: collapsed
    assert manifest["roles"]["teacher"]["arch"] == "test_teacher"
    student = manifest["roles"]["student"]
    assert student["params"] == count_params(create_model("test_student", 10, 1, (8, 8))) and student["macs"] > 1
