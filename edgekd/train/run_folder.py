"""A run folder's life cycle: where it goes, how it is started, resumed or replaced, and its
``metrics.jsonl``. Nothing here trains: :mod:`edgekd.train.run` and :mod:`edgekd.train.sweep` use it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import is_temporary, write_json_lines, write_text
from edgekd.config import Config, describe_changes, dump_yaml, load_config, load_saved_config
from edgekd.errors import ConfigError, EdgekdError
from edgekd.jsonfile import read_json_lines

RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl")


def default_out(config: Config) -> Path:
    return Path("runs") / (config.name or "run")


def resumed_config(out_dir: Path, config: Config | str | Path | None, overrides: Sequence[str]) -> Config:
    """The saved config of the run to resume; asked for other settings, the keys that differ are
    named (old → new). ``--set`` alone applies to the saved config, so it names just its own keys."""
    saved_path = out_dir / "config.yaml"
    if not saved_path.is_file():
        raise EdgekdError(f"nothing to resume: {saved_path} not found")
    saved = load_saved_config(saved_path)
    if config is None and not overrides:
        return saved
    if isinstance(config, Config):
        wanted = config
    else:  # --set alone: on top of the saved config, so that only the keys it sets can differ
        wanted = load_config(config if config is not None else saved_path, overrides)
    changed = describe_changes(saved, wanted)
    if changed:
        raise ConfigError(
            f"cannot resume {out_dir} with a different config (changed: {changed}); "
            "resume without --config/--set, or start a new run"
        )
    return saved


def _inputs(cfg: Config) -> list[str]:
    """Paths the run reads: never inside a folder it would replace."""
    d = cfg.distill
    paths = [
        cfg.teacher.checkpoint,
        cfg.student.checkpoint,
        *d.ensemble.teacher_checkpoints,
        d.transfer.set,
        cfg.data.root,
    ]
    if cfg.source is not None:
        paths.append(cfg.source.root)
    return [p for p in paths if p]


# what a run (and a sweep) folder holds besides *.pt, teacher_cache/ and its sub-runs
OWN_FILES = (*RUN_FILES, "sweep.json", "sweep.png", "best.yaml", "sweep_teacher.json")


def not_a_run(folder: Path) -> str | None:
    """Why ``folder`` is not a run (or sweep) folder edgekd made; None when it is one.

    Its config.yaml must be an edgekd config, and everything in it a name edgekd writes: a user's
    file left in a run folder makes it theirs, and it is not replaced."""
    from edgekd.outputs import not_a_bundle

    config = folder / "config.yaml"
    if config.is_file():
        try:
            load_config(config)
        except EdgekdError:
            return f"{config} is not an edgekd config"
    elif any(not _prepared_entry(entry) for entry in folder.iterdir()):
        return "it has no edgekd config.yaml"
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name == "teacher_cache" and entry.is_symlink():  # a shared cache (search): a removed link keeps its target
            continue
        if entry.is_symlink():
            return f"it holds a link, {name}"
        if is_temporary(name):  # an atomic write's, left by a write cut short
            continue
        if entry.is_file() and (name in OWN_FILES or name.endswith(".pt")):
            continue
        # a sweep's runs, and a bundle exported into the run folder
        if entry.is_dir() and (name == "teacher_cache" or not_a_run(entry) is None or not_a_bundle(entry) is None):
            continue
        return f"it holds {name}, which edgekd does not write"
    return None


def _prepared_entry(entry: Path) -> bool:
    """What a folder made ready for a run may hold before its config.yaml: a teacher cache (a
    link to a shared one, from `edgekd search`) and an atomic write's temporary."""
    name = entry.name
    return name == "teacher_cache" or is_temporary(name)


def check_new_run(cfg: Config, out_dir: Path, overwrite: bool) -> None:
    """``out_dir`` can take a new run: new, empty, or (``overwrite``) an edgekd run folder that the
    run does not read from. Nothing is written here."""
    from edgekd.outputs import check_output_dir

    if out_dir.is_dir() and any((out_dir / name).exists() for name in RUN_FILES) and not overwrite:
        raise EdgekdError(f"{out_dir} already holds a run; use --resume to continue it or --overwrite to start again")
    # replace=True: a run in it was refused above unless overwrite; a folder made ready is written into
    check_output_dir(out_dir, "run", not_a_run, protect=_inputs(cfg) if overwrite else (), replace=True)


def start_run_dir(cfg: Config, out_dir: Path, resume: bool) -> None:
    """The first write of a run, after every check passed: the old run replaced (checked again,
    it may have changed meanwhile), the folder made, config.yaml written. A folder made ready
    without a run in it (a shared teacher cache linked in) is kept as it is."""
    if not resume:
        if out_dir.is_dir() and any((out_dir / name).exists() for name in RUN_FILES):
            why = not_a_run(out_dir)
            if why is not None:
                raise EdgekdError(f"{out_dir} changed while the run was checked ({why}); it is left as it is")
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "config.yaml", dump_yaml(cfg))


def prepare_out_dir(
    cfg: Config,
    out_dir: Path,
    config: Config | str | Path | None,
    overrides: Sequence[str],
    resume: bool,
    overwrite: bool,
) -> Config:
    """Check and start a folder at once (a sweep's: each point's run does its own full checks).
    Returns the config to go on with (resuming: the saved one)."""
    if resume:
        cfg = resumed_config(out_dir, config, overrides)
    else:
        check_new_run(cfg, out_dir, overwrite)
    start_run_dir(cfg, out_dir, resume)
    return cfg


class MetricsLog:
    """``metrics.jsonl``: every stage's per-epoch records, rewritten atomically after each epoch."""

    def __init__(self, path: Path, keep_existing: bool) -> None:
        self.path = path
        self.by_stage: dict[str, list[dict[str, Any]]] = {}
        if keep_existing and path.is_file():
            # read before the folder is touched: a file cut short or edited by hand was a traceback
            fix = f"move {path.name} away to resume without the earlier epochs' records"
            for number, rec in enumerate(read_json_lines(path, fix), 1):
                if not isinstance(rec.get("stage"), str):
                    raise EdgekdError(f"{path} is corrupt (record {number} names no stage); {fix}")
                self.by_stage.setdefault(rec["stage"], []).append(rec)

    def update(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from edgekd.train.distributed import world

        self.by_stage[record["stage"]] = list(history)
        if world().main:  # every rank holds the same (all-reduced) records; one writes them
            write_json_lines(self.path, [r for recs in self.by_stage.values() for r in recs])
