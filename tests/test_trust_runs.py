"""Nothing of the user's is deleted or overwritten; validation comes before the first write; a
diverging run stops truthfully; bad input gets one line.

Every refusal here also checks that the files the user had are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.atomic import atomic_dir, write_json, write_text
from edgekd.config import dump_yaml, load_config
from edgekd.errors import CheckpointError, ConfigError, EdgekdError


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) → sha256: the user's files, to compare after."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fake_run(folder: Path, **overrides: object) -> Path:
    """A folder shaped like a finished run (config, summary, a checkpoint), made in milliseconds."""
    from edgekd.checkpoint import model_payload, save_checkpoint
    from edgekd.models import create_model

    folder.mkdir(parents=True)
    write_text(folder / "config.yaml", dump_yaml(load_config(None, tiny_overrides(**overrides))))
    write_json(folder / "summary.json", {"student": {"test_acc": 0.5}})
    info = {
        "num_classes": 10,
        "in_channels": 1,
        "image_size": [8, 8],
        "mean": [0.3],
        "std": [0.3],
        "task": "classification",
    }
    save_checkpoint(
        folder / "student.pt",
        model_payload(create_model("test_student", 10, 1, (8, 8)), "test_student", {}, info, "student"),
    )
    return folder


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- export --out ----------------------------------------------------------------------------


def test_export_refuses_every_out_that_is_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:

    run = fake_run(tmp_path / "runs" / "tiny")
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    plain = tmp_path / "file.txt"
    plain.write_text("mine too")
    before = tree(tmp_path)
    cases = {
        project: "is a folder edgekd did not make (it has no edgekd manifest.json)",
        plain: "is an existing file, not a folder",
        run: "which is being read",
        run.parent: "which is being read",
        tmp_path: "which is being read",
    }
    _export_refuses(run, cases, capsys)
    assert tree(tmp_path) == before


def _export_refuses(run: Path, cases: dict[Path, str], capsys: pytest.CaptureFixture, *options: str) -> None:
    """``edgekd export --run run --out <folder>`` exits 2 for each folder of ``cases``, its one error
    line naming what the case says."""
    from edgekd.cli import main

    for out, needle in cases.items():
        assert main(["export", "--run", str(run), "--out", str(out), *options]) == 2, out
        assert needle in error_line(capsys.readouterr().err), out


def fake_bundle(folder: Path) -> Path:
    """A folder shaped like a bundle (a manifest listing a model and a file in a subfolder)."""
    from edgekd.bundle import file_record

    (folder / "models").mkdir(parents=True)
    (folder / "student.onnx").write_bytes(b"onnx")
    (folder / "models" / "student.pt").write_bytes(b"pt")
    files = {name: file_record(folder / name) for name in ("student.onnx", "models/student.pt")}
    write_json(folder / "manifest.json", {"format": "edgekd.bundle/1", "files": files})
    return folder


def test_export_replaces_a_bundle_only_when_all_of_it_is_edgekds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # a manifest that parsed was enough: export replaced the folder whole (exit 0), deleting a
    # user's notes left in a bundle, or a thesis beside a copied manifest.json

    run = fake_run(tmp_path / "runs" / "tiny")
    plus = fake_bundle(tmp_path / "bundle_plus")
    (plus / "my_notes.txt").write_text("mine")
    deep = fake_bundle(tmp_path / "bp2")
    (deep / "sub").mkdir()
    (deep / "sub" / "thesis.tex").write_text("precious")
    in_report = fake_bundle(tmp_path / "bp3")
    (in_report / "bench" / "cpu").mkdir(parents=True)
    (in_report / "bench" / "cpu" / "plan.txt").write_text("mine")
    in_models = fake_bundle(tmp_path / "bp4")
    (in_models / "models" / "extra.pt").write_text("mine")
    linked = fake_bundle(tmp_path / "bp5")
    (linked / "data").symlink_to(tmp_path / "runs", target_is_directory=True)
    link = tmp_path / "link"
    link.symlink_to(fake_bundle(tmp_path / "target"), target_is_directory=True)
    before = tree(tmp_path)
    cases = {
        plus: "it holds my_notes.txt, which is not part of the bundle",
        deep: "it holds sub, which is not part of the bundle",
        in_report: "it holds bench/cpu/plan.txt, which is not part of the bundle",
        in_models: "it holds models/extra.pt, which is not part of the bundle",
        linked: "it holds a link, data",
        link: "is a symbolic link",
    }
    _export_refuses(run, cases, capsys)
    assert tree(tmp_path) == before and link.is_symlink()


QUICK_EXPORT = ["--set", "export.models=[student]", "--set", "export.formats=[pytorch]", "--allow-parity-failure"]


def test_export_over_a_bundle_keeps_the_users_hidden_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A .DS_Store at a bundle's top level (which verify ignores) made export refuse to replace the
    bundle. A hidden entry there is the user's: moved into the new bundle with its content, never
    deleted, those that come while the export runs too; an atomic write's leftover is edgekd's."""
    import edgekd.exporters.export as exp
    from edgekd.bundle import read_manifest, verify_bundle
    from edgekd.cli import main

    run = fake_run(tmp_path / "runs" / "tiny")
    out = tmp_path / "bundle"
    assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0
    (out / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (out / ".notes").mkdir()
    (out / ".notes" / "x.txt").write_text("mine")
    (out / ".thesis.old").write_text("precious")  # hidden, ends in .old, but no name edgekd gives
    (out / ".manifest.json.abcdefgh.tmp").write_text("half")  # an atomic write of edgekd's cut short
    real_record = exp.file_record

    def record_and_add_a_hidden_file(path: Path) -> dict:
        (out / ".late").write_text("came while the export ran")
        return real_record(path)

    monkeypatch.setattr(exp, "file_record", record_and_add_a_hidden_file)
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0, capsys.readouterr().err
    assert (out / ".DS_Store").read_bytes() == b"\x00\x00\x00\x01Bud1"
    assert (out / ".notes" / "x.txt").read_text() == "mine" and (out / ".thesis.old").read_text() == "precious"
    assert (out / ".late").read_text() == "came while the export ran"
    assert not (out / ".manifest.json.abcdefgh.tmp").exists()
    assert not any(name.startswith(".") for name in read_manifest(out)["files"])
    assert verify_bundle(out).passed, verify_bundle(out).bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "runs"]  # no .tmp/.old/.kept left
    assert main(["verify", str(out)]) == 0


def test_hidden_entries_do_not_make_other_foreign_entries_replaceable(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Only hidden top-level entries are carried over: a user's other file still makes the folder
    theirs, and a link does wherever it is; everything is left as it was. A bundle inside a run
    folder, which distill --overwrite deletes with the run, stays strict about hidden files too."""
    from edgekd.outputs import not_a_bundle

    run = fake_run(tmp_path / "runs" / "tiny")
    notes = fake_bundle(tmp_path / "b1")
    (notes / ".DS_Store").write_bytes(b"ds")
    (notes / "notes.txt").write_text("mine")
    hidden_link = fake_bundle(tmp_path / "b2")
    (hidden_link / ".data").symlink_to(tmp_path / "runs", target_is_directory=True)
    link_inside = fake_bundle(tmp_path / "b3")
    (link_inside / ".notes").mkdir()
    (link_inside / ".notes" / "data").symlink_to(tmp_path / "runs", target_is_directory=True)
    before = tree(tmp_path)
    cases = {
        notes: "it holds notes.txt, which is not part of the bundle",
        hidden_link: "it holds a link, .data",
        link_inside: "it holds a link, .notes/data",
    }
    _export_refuses(run, cases, capsys, *QUICK_EXPORT)
    assert tree(tmp_path) == before and (hidden_link / ".data").is_symlink()
    (notes / "notes.txt").unlink()
    assert not_a_bundle(notes) == "it holds .DS_Store, which is not part of the bundle"


def test_export_over_a_bundle_keeps_the_users_hidden_entries_below_its_top_level(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A .DS_Store that Finder writes in bench/ (or a hidden note in any folder of the bundle) made
    export refuse the bundle. Like a top-level one, it is the user's: moved into the new bundle at
    the same path, its folders made there, never deleted; the bundle made so verifies and may be
    exported over again. edgekd's reports around it are replaced, an atomic write's leftover too."""
    from edgekd.bundle import verify_bundle
    from edgekd.cli import main

    run = fake_run(tmp_path / "runs" / "tiny")
    out = tmp_path / "bundle"
    assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0
    (out / "bench" / "cpu").mkdir(parents=True)
    (out / "bench" / "cpu" / "bench.json").write_text("{}")  # edgekd's report: replaced with the bundle
    (out / "bench" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (out / "bench" / "cpu" / ".notes").mkdir()
    (out / "bench" / "cpu" / ".notes" / "x.txt").write_text("mine")
    (out / "bench" / "cpu" / ".bench.json.abcdefgh.tmp").write_text("half")  # edgekd's, cut short
    (out / "sub").mkdir()  # a folder holding only the user's hidden file: remade for it
    (out / "sub" / ".notes.txt").write_text("mine too")
    for _ in range(2):  # the bundle made so is replaced again, the same way
        capsys.readouterr()
        assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0, capsys.readouterr().err
        assert (out / "bench" / ".DS_Store").read_bytes() == b"\x00\x00\x00\x01Bud1"
        assert (out / "bench" / "cpu" / ".notes" / "x.txt").read_text() == "mine"
        assert (out / "sub" / ".notes.txt").read_text() == "mine too"
        assert sorted(p.name for p in (out / "bench" / "cpu").iterdir()) == [".notes"]
        assert verify_bundle(out).passed, verify_bundle(out).bad
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "runs"]  # no .tmp/.old/.kept left
    # a bundle whose manifest lists a folder's files: a hidden one beside them is carried too
    listed = fake_bundle(tmp_path / "listed")
    (listed / "models" / ".DS_Store").write_bytes(b"ds")
    assert main(["export", "--run", str(run), "--out", str(listed), *QUICK_EXPORT]) == 0
    assert (listed / "models" / ".DS_Store").read_bytes() == b"ds" and not (listed / "models" / "student.pt").exists()
    assert verify_bundle(listed).passed, verify_bundle(listed).bad
    assert main(["verify", str(listed)]) == 0


def test_hidden_entries_below_the_top_level_do_not_make_other_foreign_entries_replaceable(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A hidden file beside a user's file, in any folder of the bundle, does not make the folder
    replaceable: export refuses it with one line, exit 2, and everything is left as it was; a link
    below the top level is refused, hidden or not, and so is an empty folder edgekd did not make."""

    run = fake_run(tmp_path / "runs" / "tiny")
    in_report = fake_bundle(tmp_path / "b1")
    (in_report / "bench" / "cpu").mkdir(parents=True)
    (in_report / "bench" / "cpu" / ".DS_Store").write_bytes(b"ds")
    (in_report / "bench" / "cpu" / "plan.txt").write_text("mine")
    in_sub = fake_bundle(tmp_path / "b2")
    (in_sub / "sub").mkdir()
    (in_sub / "sub" / ".notes.txt").write_text("mine")
    (in_sub / "sub" / "thesis.tex").write_text("precious")
    hidden_link = fake_bundle(tmp_path / "b3")
    (hidden_link / "bench").mkdir()
    (hidden_link / "bench" / ".data").symlink_to(tmp_path / "runs", target_is_directory=True)
    empty = fake_bundle(tmp_path / "b4")
    (empty / "sub" / "empty").mkdir(parents=True)
    (empty / "sub" / ".notes.txt").write_text("mine")
    before = tree(tmp_path)
    cases = {
        in_report: "it holds bench/cpu/plan.txt, which is not part of the bundle",
        in_sub: "it holds sub, which is not part of the bundle",
        hidden_link: "it holds a link, bench/.data",
        empty: "it holds sub, which is not part of the bundle",
    }
    _export_refuses(run, cases, capsys, *QUICK_EXPORT)
    assert tree(tmp_path) == before and (hidden_link / "bench" / ".data").is_symlink()
    assert (empty / "sub" / "empty").is_dir()


def _refuse_to_move_ds_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic_dir's renames fail for a .DS_Store (a carry that cannot move), succeed otherwise."""
    import edgekd.atomic

    real_rename = os.rename

    def refuse(src, dst) -> None:
        if Path(src).name == ".DS_Store":
            raise PermissionError(1, "Operation not permitted")
        real_rename(src, dst)

    monkeypatch.setattr(edgekd.atomic.os, "rename", refuse)


def test_atomic_dir_carries_entries_below_the_top_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``carry`` names paths below the top level too: each is moved to the same path in the new
    folder, the folders above it made there. As at the top level, a path the new folder holds too
    (or holds a file where it needs a folder) is refused before the swap, and an entry that cannot
    be moved after it keeps the old folder."""
    from edgekd.outputs import kept_hidden

    out = tmp_path / "out"
    (out / "bench" / "cpu").mkdir(parents=True)
    (out / "bench" / "cpu" / "bench.json").write_text("old")
    (out / "bench" / "cpu" / ".DS_Store").write_text("mine")
    for clash, match in (
        ("bench/cpu/.DS_Store", "and so does the folder replacing it"),
        ("bench", "has a file at bench"),
    ):
        with pytest.raises(FileExistsError, match=f"holds bench/cpu/.DS_Store, to be kept, .*{match}"):
            with atomic_dir(out, carry=kept_hidden) as tmp:
                (tmp / clash).parent.mkdir(parents=True, exist_ok=True)
                (tmp / clash).write_text("new")
        assert (
            sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "bench" / "cpu" / "bench.json").is_file()
        )

    with atomic_dir(out, carry=kept_hidden) as tmp:
        (tmp / "model.onnx").write_text("new")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "bench",
        "bench/cpu",
        "bench/cpu/.DS_Store",
        "model.onnx",
    ]
    assert (out / "bench" / "cpu" / ".DS_Store").read_text() == "mine"

    _refuse_to_move_ds_store(monkeypatch)
    with pytest.raises(OSError, match="bench/cpu/.DS_Store of the folder it replaced could not be moved into it"):
        with atomic_dir(out, carry=kept_hidden) as tmp:
            (tmp / "model.onnx").write_text("newer")
    monkeypatch.undo()
    (kept,) = [p for p in tmp_path.iterdir() if p.name.endswith(".kept")]
    assert (out / "model.onnx").read_text() == "newer" and (
        kept / "out" / "bench" / "cpu" / ".DS_Store"
    ).read_text() == "mine"


def test_atomic_dir_never_deletes_what_it_carries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``carry``: the old folder's entries it names are moved into the new one. A name the new
    folder holds too is refused before the swap; an entry that cannot be moved after it keeps the
    old folder, under a name no clean-up removes."""
    from edgekd.outputs import kept_hidden

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_text("old")
    (out / ".DS_Store").write_text("mine")
    with pytest.raises(FileExistsError, match="holds .DS_Store, to be kept, and so does the folder replacing it"):
        with atomic_dir(out, carry=kept_hidden) as tmp:
            (tmp / ".DS_Store").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "model.onnx").read_text() == "old"

    _refuse_to_move_ds_store(monkeypatch)
    with pytest.raises(OSError, match="could not be moved into it .Operation not permitted.; that folder is kept as"):
        with atomic_dir(out, carry=kept_hidden) as tmp:
            (tmp / "model.onnx").write_text("new")
    monkeypatch.undo()
    (kept,) = [p for p in tmp_path.iterdir() if p.name.endswith(".kept")]
    assert (out / "model.onnx").read_text() == "new" and (kept / "out" / ".DS_Store").read_text() == "mine"
    with atomic_dir(out):  # a later build's clean-up of stale temporaries leaves it
        pass
    assert (kept / "out" / ".DS_Store").read_text() == "mine"


def test_a_bundle_with_edgekds_reports_in_it_may_be_replaced(tmp_path: Path) -> None:
    # bench's reports (BUNDLE/bench/<device>, a --json there), deploy's, an MCU build (marked) and
    # an atomic write's temporary are edgekd's: exporting again over the bundle replaces them too
    from edgekd.mcu.app import MARKER
    from edgekd.outputs import not_a_bundle

    bundle = fake_bundle(tmp_path / "bundle")
    for name in ("bench/cpu/bench.json", "bench/cpu/bench.md", "bench/cpu/bench.png", "bench/pi_host/bench.json"):
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text("{}")
    write_json(bundle / "bench" / "mine.json", {"schema": "edgekd.bench/1", "results": []})
    (bundle / "mcu" / "cortex-m4" / "obj").mkdir(parents=True)
    for name in (MARKER, "app.elf", "app.map", "obj/x.o", "build.json"):
        (bundle / "mcu" / "cortex-m4" / name).write_text("x")
    (bundle / ".manifest.json.123-abcdefgh.tmp").write_text("half")
    assert not_a_bundle(bundle) is None
    write_json(bundle / "bench" / "other.json", {"mine": 1})  # a JSON that is no bench report
    assert not_a_bundle(bundle) == "it holds bench/other.json, which is not part of the bundle"


def test_export_carries_the_users_hidden_entries_out_of_an_mcu_build_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An MCU build folder (mcu/<build>, marked as edgekd's) went with the old bundle whole on
    re-export, a .DS_Store Finder wrote in it too. The user's hidden entries there are carried into
    the new bundle at the same paths; the build's own marker and files are not; an MCU build may
    then write into the folder left holding only them, and clearing it deletes only its own files
    (it also deleted a `.tmp` folder that no build makes)."""
    from edgekd.bundle import verify_bundle
    from edgekd.cli import main
    from edgekd.mcu import build
    from edgekd.mcu.app import MARKER, _check_out

    run = fake_run(tmp_path / "runs" / "tiny")
    out = tmp_path / "bundle"
    assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0
    app = out / "mcu" / "cortex-m4"
    (app / "obj").mkdir(parents=True)
    for name in (MARKER, "app.elf", "build.json", "obj/x.o"):
        (app / name).write_text("edgekd's")
    (app / ".DS_Store").write_bytes(b"ds")
    (app / "obj" / ".notes").mkdir()
    (app / "obj" / ".notes" / "n.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(out), *QUICK_EXPORT]) == 0, capsys.readouterr().err
    assert tree(app) == tree_of({".DS_Store": b"ds", "obj/.notes/n.txt": b"mine"})
    assert verify_bundle(out).passed, verify_bundle(out).bad
    _check_out(app, out / "student.pt")  # the folder holding only them may take a build
    (app / MARKER).write_text("edgekd's")
    (app / "app.elf").write_text("old build")
    (app / ".tmp").mkdir()
    (app / ".tmp" / "mine.txt").write_text("mine")
    build.clear_app_dir(app)
    assert not (app / "app.elf").exists() and (app / ".tmp" / "mine.txt").read_text() == "mine"
    (app / "notes.txt").write_text("mine")  # a user's file there still makes a folder of theirs alone
    (app / MARKER).unlink()
    with pytest.raises(EdgekdError, match="did not make"):
        _check_out(app, out / "student.pt")


def tree_of(files: dict[str, bytes]) -> dict[str, str]:
    """:func:`tree`'s form of ``files`` (relative path → content)."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


def test_check_output_dir_allows_new_empty_and_own_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.outputs import OutputError, check_output_dir, not_a_bundle

    (tmp_path / "empty").mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    write_json(bundle / "manifest.json", {"format": "edgekd.bundle/1", "files": {}})
    for ok in (tmp_path / "new" / "deeper", tmp_path / "empty", bundle):
        check_output_dir(ok, "bundle", not_a_bundle, beside=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write the bundle to .*file is a file"):
        check_output_dir(tmp_path / "file" / "sub", "bundle", not_a_bundle)
    # a read-only place is refused before any work (root ignores permissions: ask os.access)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(OutputError, match="is not writable"):
        check_output_dir(tmp_path / "out", "bundle", not_a_bundle)


def test_stale_temp_folders_of_a_killed_export_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    dead = tmp_path / ".bundle.99999999-abcd1234.tmp"  # no process has that id: a killed export's
    live = tmp_path / f".bundle.{os.getpid()}-abcd1234.tmp"  # a build running now: kept
    mine = tmp_path / ".bundle.backup.tmp"  # not our naming: the user's, kept
    for d in (dead, live, mine):
        (d / "half").mkdir(parents=True)
    with atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_text("x")
    assert not dead.exists() and live.exists() and mine.exists() and (out / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".bundle.backup.tmp", live.name, "bundle"])


def test_temporaries_are_the_names_atomic_writes_make(tmp_path: Path) -> None:
    """What a bundle or run folder may hold as edgekd's own leftovers (replaced with it) is a name
    an atomic write makes, not any hidden name ending in .tmp or .old: a user's .notes.old was
    taken for edgekd's, and exporting over the bundle deleted it."""
    import tempfile

    from edgekd.atomic import _dir_prefix, atomic_open, is_temporary

    made = []
    with atomic_open(tmp_path / "manifest.json", "w") as fh:
        made += [p.name for p in tmp_path.iterdir()]
        fh.write("{}")
    with atomic_dir(tmp_path / "bundle") as tmp:
        made.append(tmp.name)
    old = tempfile.mkdtemp(prefix=_dir_prefix(tmp_path / "bundle"), suffix=".old", dir=tmp_path)  # as atomic_dir
    made.append(Path(old).name)
    assert len(made) == 3 and all(is_temporary(name) for name in made), made
    for name in (".notes.old", ".draft.tmp", ".bundle.backup.tmp", ".DS_Store", ".git", "x.abcdefgh.tmp"):
        assert not is_temporary(name), name


# -- distill --out / --overwrite -------------------------------------------------------------


def test_overwrite_with_a_typo_keeps_the_old_run(tmp_path: Path) -> None:
    from edgekd.train.run import distill

    run = fake_run(tmp_path / "run")
    before = tree(run)
    with pytest.raises(
        ConfigError, match="config: student.arch: unknown model 'test_studnet'; did you mean 'test_student'"
    ):
        distill(out=run, set=tiny_overrides(**{"student.arch": "test_studnet"}), overwrite=True)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        distill(
            out=run,
            set=tiny_overrides(**{"teacher.checkpoint": str(tmp_path / "missing.pt"), "teacher.epochs": 0}),
            overwrite=True,
        )
    with pytest.raises(ConfigError, match="unknown export format 'tflite_int9'"):
        distill(out=run, set=tiny_overrides(**{"export.formats": "[tflite_int9]"}), overwrite=True)
    assert tree(run) == before


def test_a_misspelled_arch_is_named_before_the_data_loads(tmp_path: Path) -> None:
    from edgekd.train.run import distill

    # the data root does not exist: the arch's name is checked first, so its error is the one seen
    bad = {"data.name": "cifar10", "data.root": str(tmp_path / "no-data"), "teacher.arch": "resnet2O"}
    with pytest.raises(ConfigError, match="config: teacher.arch: unknown model 'resnet2O'"):
        distill(out=tmp_path / "run", set=tiny_overrides(**bad))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, needle",
    [
        # the allocator refuses the weights: torch's RuntimeError
        ({"student.kwargs": "{width: 10000000}"}, "test_student with kwargs {'width': 10000000} cannot be built"),
        # a factory's model that takes 3-channel input only: its forward's RuntimeError
        (
            {"student.arch": "torchvision.models:resnet18"},
            r"torchvision.models:resnet18 with kwargs {} cannot be built for or run on the data's 1x8x8 input "
            r"\(RuntimeError: Given groups=1",
        ),
    ],
)
def test_a_model_that_cannot_be_built_or_run_on_the_data_is_one_line(
    tmp_path: Path, overrides: dict, needle: str
) -> None:
    """preflight turned only edgekd's own errors into one line: a factory's or its forward's
    exception escaped it as a traceback."""
    from edgekd.train.run import distill

    with pytest.raises(ConfigError, match=f"config: student.arch: {needle}"):
        distill(out=tmp_path / "run", set=tiny_overrides(**overrides))
    assert not (tmp_path / "run").exists()


def test_failed_validation_writes_nothing(tmp_path: Path) -> None:
    from edgekd.train.run import distill

    out = tmp_path / "new"
    with pytest.raises(ConfigError, match="unknown model"):
        distill(out=out, set=tiny_overrides(**{"student.arch": "nosuch"}))
    with pytest.raises(EdgekdError, match="data.root is required"):
        distill(out=out, set=tiny_overrides(**{"data.name": "cifar10"}))
    # inputs that only one method reads are read before training too
    with pytest.raises(EdgekdError, match=r"distill\.transfer\.set"):
        distill(
            out=out,
            set=tiny_overrides(**{"distill.method": "transfer", "distill.transfer.set": str(tmp_path / "missing")}),
        )
    with pytest.raises(EdgekdError, match="data.root is required for svhn"):
        distill(
            out=out, set=tiny_overrides(**{"distill.method": "domain", "source.name": "svhn", "data.shift": "invert"})
        )
    assert not out.exists()


def test_overwrite_replaces_only_an_edgekd_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgekd.cli import main

    run = fake_run(tmp_path / "run")
    (run / "my-notes.txt").write_text("mine")  # a user's file in it makes it theirs
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('mine')")
    (tmp_path / "file").write_text("x")
    inside = fake_run(tmp_path / "reads")
    before = tree(tmp_path)
    args = [x for s in tiny_overrides() for x in ("--set", s)]
    cases = {
        run: "is a folder edgekd did not make (it holds my-notes.txt, which edgekd does not write)",
        project: "is a folder edgekd did not make (it has no edgekd config.yaml)",
        tmp_path / "file": "is an existing file, not a folder",
    }
    for out, needle in cases.items():
        assert main(["distill", "--out", str(out), "--overwrite", *args]) == 2, out
        assert needle in error_line(capsys.readouterr().err), out
    # the run reads a checkpoint inside the folder it would replace
    ckpt = ["--set", f"student.checkpoint={inside / 'student.pt'}"]
    assert main(["distill", "--out", str(inside), "--overwrite", *args, *ckpt]) == 2
    assert "which is being read" in error_line(capsys.readouterr().err)
    assert tree(tmp_path) == before


def test_resume_names_only_the_changed_keys(tmp_path: Path) -> None:
    from edgekd.train.run import distill

    run = fake_run(tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        distill(out=run, set=["student.epochs=5", "distill.temperature=8"], resume=True)
    changed = str(err.value).split("changed: ", 1)[1].split(");", 1)[0]
    assert changed == "distill.temperature: 4.0 → 8.0, student.epochs: 2 → 5"


@pytest.mark.parametrize(
    "line, needle",
    [
        ('{"stage": "teacher", "epo', r"line 2: Unterminated string"),  # cut short
        ('{"stage": "teacher", "loss": NaN}', r"line 2: NaN is not a JSON number"),  # not edgekd's strict JSON
        ("[1, 2]", r"line 2 holds a list"),
        ('{"epoch": 1}', r"record 2 names no stage"),
    ],
)
def test_resume_refuses_a_corrupt_metrics_log_in_one_line(tmp_path: Path, line: str, needle: str) -> None:
    """metrics.jsonl was read back with a bare json.loads: a line cut short or edited by hand was a
    traceback. It is read strictly, before anything in the folder is touched."""
    from edgekd.train.run import distill

    run = fake_run(tmp_path / "run")
    (run / "metrics.jsonl").write_text('{"stage": "teacher", "epoch": 1}\n' + line + "\n")
    before = tree(run)
    with pytest.raises(EdgekdError, match=f"metrics.jsonl is corrupt \\({needle}.*\\); move metrics.jsonl away"):
        distill(out=run, resume=True)
    assert tree(run) == before


@pytest.mark.parametrize("text", ["", "# nothing\n", "seed: 0\n"])
def test_an_emptied_run_config_is_refused_not_read_as_the_defaults(tmp_path: Path, text: str) -> None:
    """An empty or cut config.yaml was read as the defaults: resume and export went on with the
    default models, and the error that followed named those, not the file."""
    from edgekd.exporters.export import export
    from edgekd.train.run import distill

    run = fake_run(tmp_path / "run")
    (run / "config.yaml").write_text(text)
    before = tree(run)
    for call in (lambda: distill(out=run, resume=True), lambda: export(run=run, out=tmp_path / "b")):
        with pytest.raises(ConfigError, match=r"config.yaml is incomplete: no data, teacher, student section"):
            call()
    assert tree(run) == before and not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "a\\b"])
def test_a_run_name_with_a_path_in_it_is_refused(name: str) -> None:
    """The default run folder is runs/<name>: name=../x put it outside runs/."""
    with pytest.raises(ConfigError, match="config: name must be a plain folder name"):
        load_config(None, [f"name={json.dumps(name)}"])


def test_old_run_folder_with_flat_method_keys_still_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run folder written before the method sections (config.yaml with distill.dkd_beta, …)
    loads with its keys in their sections: a resume compares it key for key with the new layout."""
    import yaml

    from edgekd.train.run import distill

    run = fake_run(tmp_path / "run", **{"distill.method": "dkd", "distill.dkd.beta": 3})
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["distill"]["dkd"] == {"alpha": 1.0, "beta": 3.0}  # written in the new layout
    flat = {k: v for k, v in saved["distill"].items() if k not in ("fitnets", "takd", "ensemble", "transfer", "domain")}
    flat.pop("dkd"), flat.pop("dist")
    flat.update(dkd_alpha=1.0, dkd_beta=3.0, dist_beta=2.0, dist_gamma=2.0, hint_layer=None, assistants=[])
    write_text(run / "config.yaml", yaml.safe_dump({**saved, "distill": flat}, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        distill(out=run, set=["student.epochs=5"], resume=True)
    assert str(err.value).split("changed: ", 1)[1].split(");", 1)[0] == "student.epochs: 2 → 5"
    assert "distill.dkd_beta" in capsys.readouterr().err  # the note on the old names


def test_teacher_checkpoint_of_another_arch_says_which_is_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgekd.checkpoint import model_payload, save_checkpoint
    from edgekd.config import DataConfig
    from edgekd.data import load_dataset
    from edgekd.models import create_model
    from edgekd.train.run import distill

    info = load_dataset(DataConfig(name="digits")).describe()
    save_checkpoint(
        tmp_path / "t.pt",
        model_payload(create_model("test_teacher", 10, 1, (8, 8)), "test_teacher", {}, info, "teacher"),
    )
    settings = {
        "teacher.arch": "resnet8",
        "teacher.checkpoint": str(tmp_path / "t.pt"),
        "teacher.epochs": 0,
        "student.checkpoint": str(tmp_path / "missing.pt"),
    }  # stops the run right after the teacher's check
    with pytest.raises(CheckpointError, match="missing.pt"):
        distill(out=tmp_path / "run", set=tiny_overrides(**settings))
    err = capsys.readouterr().err
    assert "holds a test_teacher and teacher.arch is resnet8: the teacher is the checkpoint's test_teacher" in err
    assert not (tmp_path / "run").exists()


# -- truthful training -----------------------------------------------------------------------


def test_non_finite_loss_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The loss turns NaN in the teacher's second epoch: the run stops naming epoch and step, keeps
    epoch 1's checkpoint, writes no summary, and the command exits 1."""
    from edgekd.checkpoint import load_checkpoint
    from edgekd.cli import main
    from edgekd.train import trainer

    steps = {"n": 0}
    forward = trainer.StudentStep.forward

    def poisoned(self, x, y, teacher_out):
        s_out, parts = forward(self, x, y, teacher_out)
        steps["n"] += 1
        if steps["n"] == steps_per_epoch + 3:
            parts = {**parts, "loss": parts["loss"] * float("nan")}
        return s_out, parts

    from edgekd.config import DataConfig
    from edgekd.data import load_dataset

    data = load_dataset(DataConfig(name="digits"))
    steps_per_epoch = len(data.train) // 64  # drop_last batches of data.batch_size=64
    monkeypatch.setattr(trainer.StudentStep, "forward", poisoned)
    out = tmp_path / "run"
    args = [x for s in tiny_overrides(**{"teacher.epochs": 3}) for x in ("--set", s)]
    assert main(["distill", "--out", str(out), *args]) == 1
    line = error_line(capsys.readouterr().err)
    assert f"teacher: the loss became NaN or infinite at epoch 2, step 3 of {steps_per_epoch}" in line
    assert "teacher_last.pt (epoch 1) is kept" in line
    last = load_checkpoint(out / "teacher_last.pt")
    assert last["epoch"] == 1 and all(
        bool(torch.isfinite(v).all()) for v in last["state_dict"].values() if v.is_floating_point()
    )
    assert not (out / "summary.json").exists() and not (out / "teacher.pt").exists()


def test_corrupt_teacher_cache_is_recomputed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgekd.config import DataConfig, RuntimeConfig
    from edgekd.data import load_dataset
    from edgekd.models import create_model
    from edgekd.train.runtime import configure
    from edgekd.train.teacher_cache import cache_key, teacher_outputs

    data = load_dataset(DataConfig(name="digits", augment="none"))
    rt = configure(RuntimeConfig(device="cpu", threads=1), 0)
    teacher = create_model("test_teacher", 10, 1, data.image_size).eval()
    path = tmp_path / "teacher_cache" / f"student-{cache_key(teacher, data, 1, 0)}.pt"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 truncated by a full disk")
    outputs = teacher_outputs(teacher, data, 1, 0, rt, tmp_path, "student", 256)
    assert tuple(outputs.shape) == (1, len(data.train), 10)
    assert "is unusable" in capsys.readouterr().err
    again = teacher_outputs(teacher, data, 1, 0, rt, tmp_path, "student", 256)  # the rewritten cache now loads
    assert torch.equal(again, outputs)
    # a plain pickle in its place: recomputed, without torch's two-line pickle-protocol warning
    import pickle

    path.write_bytes(pickle.dumps({"not": "tensors"}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = teacher_outputs(teacher, data, 1, 0, rt, tmp_path, "student", 256)
    assert torch.equal(third, outputs) and "is unusable" in capsys.readouterr().err
    assert not [w for w in caught if "pickle protocol" in str(w.message)]


def test_a_file_system_refusal_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Whatever the checks could not foresee (a disk that fills, a folder made read-only meanwhile)
    is still one line and exit 2, not a traceback."""
    from edgekd.cli import main
    from edgekd.train import run

    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", "/mnt/ro/run/config.yaml")

    monkeypatch.setattr(run, "distill", refused)
    assert main(["distill", "--out", "/mnt/ro/run"]) == 2
    assert error_line(capsys.readouterr().err) == "edgekd: error: /mnt/ro/run/config.yaml: Permission denied"


def test_a_folder_made_ready_for_a_run_is_kept(tmp_path: Path) -> None:
    """A folder holding only a link to a shared teacher cache (what `edgekd search` prepares) takes
    a run, and keeps the link; any other link or file makes the folder not edgekd's."""
    from edgekd.train.run_folder import check_new_run, not_a_run, start_run_dir

    shared = tmp_path / "shared-cache"
    shared.mkdir()
    (shared / "teacher-abc.pt").write_bytes(b"cache")
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "teacher_cache").symlink_to(shared, target_is_directory=True)
    cfg = load_config(None, tiny_overrides())
    check_new_run(cfg, trial, overwrite=False)
    start_run_dir(cfg, trial, resume=False)
    assert (trial / "teacher_cache").is_symlink() and (trial / "config.yaml").is_file()
    assert (shared / "teacher-abc.pt").read_bytes() == b"cache"
    other = tmp_path / "other"
    other.mkdir()
    (other / "data").symlink_to(shared, target_is_directory=True)
    assert not_a_run(other) == "it has no edgekd config.yaml"
