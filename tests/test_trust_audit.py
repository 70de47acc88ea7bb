"""Bad inputs found by an audit of the CLI verbs: each was a traceback, a setting accepted until
torch refused it minutes later, or an MAC count that crashed the listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.bundle import BundleError, read_manifest
from edgekd.config import load_config
from edgekd.config import validate as validate_config
from edgekd.errors import ConfigError, EdgekdError
from tests.test_cli import edgekd


def test_a_manifest_with_an_integer_too_long_to_read_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": 1, "files": {"a": {"bytes": ' + "1" * 5001 + "}}}")
    with pytest.raises(BundleError, match=r"manifest.json is corrupt \(Exceeds the limit.*edgekd export"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("override", ["runtime.threads=0", "export.threads=-1", "export.threads=100000"])
def test_thread_counts_are_range_checked(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"config: {key} must be an integer from 1 to 256"):
        load_config(None, [override])


def test_export_refuses_a_run_whose_summary_is_corrupt_before_any_work(tmp_path: Path) -> None:
    from edgekd.config import dump_yaml
    from edgekd.exporters.export import export
    from tests.conftest import tiny_overrides

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(load_config(None, tiny_overrides())))
    (run / "summary.json").write_text("garbage\n")
    with pytest.raises(EdgekdError, match=r"summary.json is corrupt \(Expecting value"):
        export(run=run, out=tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_models_lists_a_net_that_cannot_run_at_the_input_instead_of_crashing() -> None:
    proc = edgekd("models", "*airbench", "--input", "3x1x1")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "not at 3x1x1" in proc.stdout


def test_a_report_folder_is_new_empty_or_a_report_of_edgekds(tmp_path: Path) -> None:
    from edgekd.outputs import OutputError, check_report_dir, not_a_report

    folder = tmp_path / "report"
    assert check_report_dir(folder, "--out", "bench report") == folder  # new: made later
    folder.mkdir()
    check_report_dir(folder, "--out", "bench report")  # empty
    names = ("bench.json", "bench.md", "bench.png", "student_int8_tflm_config.h", "x_model_data.cc", "x_model_data.h")
    for name in names:
        (folder / name).write_text("")
    (folder / ".bench.json.k2j4h5g6.tmp").write_text("")  # an atomic write cut short
    assert not_a_report(folder) is None
    check_report_dir(folder, "--out", "bench report")  # a rerun replaces its own report
    # the user's hidden entries (Finder's .DS_Store, a .notes.old that is no atomic write's name, a
    # .git folder) are left where they are: a report replaces its own files by name; they were refused
    for name in (".DS_Store", ".notes.old"):
        (folder / name).write_text("mine\n")
    (folder / ".git").mkdir()
    assert not_a_report(folder) is None
    check_report_dir(folder, "--out", "bench report")
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match=r"did not make \(it holds notes.txt, which no edgekd report writes\)"):
        check_report_dir(folder, "--out", "bench report")
    (folder / "notes.txt").unlink()
    (folder / "bench.png").unlink()
    (folder / "bench.png").mkdir()  # a folder by a report file's name is not the report's
    assert not_a_report(folder) == "it holds bench.png, which no edgekd report writes"


def test_every_bounded_config_number_refuses_values_out_of_its_range() -> None:
    from edgekd.config import _BOUNDS, validate

    for key, low, high, integer, low_open in _BOUNDS:
        below = low if low_open else low - 1
        above = high + 1 if integer else high * 2
        for value in (below, above):
            with pytest.raises(ConfigError, match=rf"^config: {key} must be an? (integer|number) "):
                validate(load_config(None, [f"{key}={value}"]))
        validate(load_config(None, [f"{key}={high}"]))  # the bound itself is allowed


@pytest.mark.parametrize(
    "override", ["student.milestones=[0]", "teacher.milestones=[5, -1]", "distill.ensemble.teacher_seeds=[-1]"]
)
def test_numbers_in_config_lists_are_range_checked(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^config: {key} must be an integer from"):
        validate_config(load_config(None, [override]))


def test_an_output_file_is_new_or_edgekds_own(tmp_path: Path) -> None:
    from edgekd.outputs import OutputError, check_output_file, holds_json_keys

    own = holds_json_keys("schema", "results")
    new = tmp_path / "report.json"
    check_output_file(new, "--json", "bench JSON", own=own)  # new: fine
    new.write_text('{"schema": 3, "results": []}')
    check_output_file(new, "--json", "bench JSON", own=own)  # an earlier report: replaced
    for text in ('{"results": []}', "[1]", "not json", ""):  # a user's file, or one cut short
        new.write_text(text)
        with pytest.raises(OutputError, match="is an existing file that is not an edgekd bench JSON"):
            check_output_file(new, "--json", "bench JSON", own=own)
    bundle = tmp_path / "bundle"
    (bundle / "bench").mkdir(parents=True)
    where = {"own": own, "inside": bundle, "except_under": bundle / "bench"}
    with pytest.raises(OutputError, match="is inside .*bundle, which is being read"):
        check_output_file(bundle / "x.json", "--json", "bench JSON", **where)
    check_output_file(bundle / "bench" / "x.json", "--json", "bench JSON", **where)  # its report folder


def test_an_output_file_two_missing_folders_deep_is_refused(tmp_path: Path) -> None:
    """Its own folder is made when missing; a folder above that one missing too is most likely a
    typo (``--json /nonexistent/dir/p.json`` made /nonexistent/dir), refused before any work."""
    from edgekd.outputs import OutputError, check_output_file

    check_output_file(tmp_path / "new" / "p.json", "--json", "predictions JSON")  # one missing folder: fine
    typo = tmp_path / "nonexistent" / "dir" / "p.json"
    with pytest.raises(OutputError, match=rf"^--json {typo}: folder {tmp_path / 'nonexistent'} does not exist"):
        check_output_file(typo, "--json", "predictions JSON")
    assert list(tmp_path.iterdir()) == []


def test_library_calls_name_an_argument_of_the_wrong_kind_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgekd

    monkeypatch.chdir(tmp_path)  # no artifacts/ here, as in a fresh clone: argument kinds are checked first

    calls = {
        "distill(123)": (lambda: edgekd.distill(123), "config must be a path"),
        "distill({...})": (lambda: edgekd.distill({"bogus": 1}), "config must be a path"),
        "distill(set=[1])": (lambda: edgekd.distill(set=[1]), "1 is a int"),
        "distill(set=str)": (lambda: edgekd.distill(set="data.name=digits"), "got the string 'data.name=digits'"),
        "distill(out=1)": (lambda: edgekd.distill(out=1), "out must be a path"),
        "export(123)": (lambda: edgekd.export(123), "run must be a path"),
        "bench(123)": (lambda: edgekd.bench(123), "artifacts must be a path"),
        "bench(model=1)": (lambda: edgekd.bench(model=1), "model must be a path"),
        "bench(models=5)": (lambda: edgekd.bench(models=5), "filter"),
        "bench(device=5)": (lambda: edgekd.bench(device=5), "device must be a name"),
        "verify_bundle(1)": (lambda: edgekd.verify_bundle(1), "bundle must be a path"),
        "load_model(5)": (lambda: edgekd.load_model(5), "checkpoint must be a path"),
        "Predictor(None)": (lambda: edgekd.Predictor(None), "artifacts must be a path"),
    }
    for name, (call, needle) in calls.items():
        with pytest.raises(EdgekdError) as info:
            call()
        assert needle in str(info.value) and "\n" not in str(info.value), name


def test_predictor_refuses_an_empty_image_a_bad_top_k_and_no_images(tiny_bundle: Path) -> None:
    import numpy as np

    from edgekd.predict import PredictError, Predictor

    p = Predictor(tiny_bundle)
    image = np.zeros((8, 8), np.uint8)
    for bad, needle in (
        (lambda: p.predict(np.zeros((0, 0), np.uint8)), "must have pixels"),  # was a prediction of nothing
        (lambda: p.predict(np.zeros((8, 0, 1), np.uint8)), "must have pixels"),
        (lambda: p.predict(image, top_k="3"), "top_k must be an integer"),
        (lambda: p.predict(image, top_k=float("nan")), "top_k must be an integer"),
        (lambda: p.logits([]), "at least one image"),
        (lambda: p.logits(None), "give a list of images"),
        (lambda: p.predict_many(5), "give a list of images"),
        (lambda: p.predict_many("a.png"), "give a list of images"),
    ):
        with pytest.raises(PredictError, match=needle):
            bad()
    assert len(p.logits(np.zeros((2, 8, 8), np.uint8))) == 2  # an N×H×W array is N images


@pytest.mark.parametrize(
    "change,needle",
    [
        # a 100000x100000 resize was a 30 GB allocation: the process was killed by the kernel
        (
            lambda m: m["preprocessing"].__setitem__("image_size", [100000, 100000]),
            "image_size must be [height, width]",
        ),
        (lambda m: m.__setitem__("preprocessing", [1]), "'preprocessing' must be a mapping"),
        (lambda m: m["preprocessing"].__setitem__("image_size", [8]), "image_size must be [height, width]"),
        (lambda m: m["preprocessing"].__setitem__("image_size", ["a", "b"]), "image_size must be [height, width]"),
        (lambda m: m["preprocessing"].__setitem__("image_size", [0, 0]), "image_size must be [height, width]"),
        (lambda m: m["preprocessing"].__setitem__("channels", 7), "channels must be 1-4"),
        (lambda m: m["preprocessing"].__setitem__("channels", "x"), "channels must be 1-4"),
        (lambda m: m["preprocessing"].__setitem__("resize", "lanczos9"), "resize must be one of"),
        (lambda m: m["preprocessing"].__setitem__("input_range", [255, 0]), "input_range must be [low, high]"),
        (lambda m: m["preprocessing"].__setitem__("std", [0.0]), "std must be a list of finite numbers > 0"),
        # sizes that pass the bounds but are not the model file's own
        (lambda m: m["preprocessing"].__setitem__("image_size", [16, 16]), "takes 8x8x"),
        (lambda m: m["preprocessing"].__setitem__("channels", 3), "but student_int8.tflite takes"),
        (lambda m: m.__setitem__("task", "segmentation"), "one output per pixel"),
        (lambda m: m.__setitem__("labels", ["a"] * 5), "5 labels for the"),
        # a label is printed as it is: an escape sequence in one rewrote the user's terminal
        (lambda m: m["labels"].__setitem__(1, "one\x1b[2J"), "'labels' must be printable text"),
        (lambda m: m["labels"].__setitem__(1, "one\ntwo"), "'labels' must be printable text"),
    ],
)
def test_predict_refuses_a_hand_edited_manifest_in_one_line(tiny_bundle: Path, tmp_path: Path, change, needle) -> None:
    """Checksums are no defence against a bundle edited by hand and resealed: predict reads its
    preprocessing as data to check, and never as sizes to allocate."""
    import json
    import shutil

    import numpy as np
    from PIL import Image

    from tests.conftest import reseal
    from tests.test_cli import assert_one_line_error

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    reseal(bundle)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
    proc = edgekd("predict", "--artifacts", str(bundle), "--format", "tflite_int8", str(tmp_path / "x.png"))
    assert_one_line_error(proc, needle)


def test_a_config_file_that_is_not_utf8_a_yaml_bomb_or_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    from edgekd.config import MAX_CONFIG_VALUES, load_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00bad")  # was a UnicodeDecodeError traceback
    bomb = tmp_path / "bomb.yaml"  # 9^10 values from 400 bytes: distill ran for minutes
    text = "student:\n  arch: test_student\n  kwargs:\n    k0: &a0 [1,2,3,4,5,6,7,8,9]\n"
    text += "".join(f"    k{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    bomb.write_text(text)
    deep = tmp_path / "deep.yaml"  # a RecursionError traceback (or, under a raised recursion limit, read)
    deep.write_text("a: " + "[" * 2_000 + "]" * 2_000 + "\n")
    for path, needle in ((bad, "not UTF-8 text"), (bomb, f"over {MAX_CONFIG_VALUES:,} values"), (deep, "too deeply")):
        with pytest.raises(ConfigError, match=needle):
            load_yaml(path)
    fine = tmp_path / "fine.yaml"  # aliases as such stay allowed
    fine.write_text("student:\n  mean: &m [0.5]\n  std: *m\n")
    assert load_yaml(fine) == {"student": {"mean": [0.5], "std": [0.5]}}
    proc = edgekd("distill", "--config", str(bomb), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stderr.count("edgekd: error:") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_edgekds_own_json_files_are_read_strictly(tmp_path: Path) -> None:
    """edgekd writes strict JSON; a NaN or Infinity in a file it reads back (a summary, a manifest, a
    cache) was edited by hand or came from elsewhere: corrupt (one line), or for a cache, recomputed."""
    from edgekd.jsonfile import cached_json_object, read_json_object

    for constant in ("NaN", "Infinity", "-Infinity"):
        path = tmp_path / "summary.json"
        path.write_text('{"student": {"val_acc": ' + constant + "}}")
        with pytest.raises(EdgekdError, match=f"summary.json is corrupt \\({constant} is not a JSON number\\); redo"):
            read_json_object(path, "redo")
        assert cached_json_object(path) is None
        (tmp_path / "manifest.json").write_text('{"format": "edgekd.bundle/1", "files": {}, "x": ' + constant + "}")
        with pytest.raises(BundleError, match="is corrupt"):
            read_manifest(tmp_path)
    path.write_text('{"student": {"val_acc": 0.5}}')
    assert read_json_object(path, "redo") == {"student": {"val_acc": 0.5}}
