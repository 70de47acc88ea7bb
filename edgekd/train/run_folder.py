"""A run folder's life cycle: where it goes, how it is started, resumed or replaced, and its
``metrics.jsonl``. Nothing here trains: :mod:`edgekd.train.run` and :mod:`edgekd.train.sweep` use it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgekd.atomic import write_text
from edgekd.config import Config, diff, dump_yaml, load_config
from edgekd.errors import ConfigError, EdgekdError

RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl")


def default_out(config: Config) -> Path:
    return Path("runs") / (config.name or "run")


def prepare_out_dir(cfg: Config, out_dir: Path, explicit: bool, resume: bool, overwrite: bool) -> Config:
    """The config the run goes on with, its folder made ready: resuming, the saved config (a
    different ``explicit`` one is an error); otherwise a new folder with ``config.yaml`` written,
    an existing run in it replaced only with ``overwrite``."""
    saved_path = out_dir / "config.yaml"
    if resume:
        if not saved_path.is_file():
            raise EdgekdError(f"nothing to resume: {saved_path} not found")
        saved = load_config(saved_path)
        if explicit:
            changed = diff(saved, cfg)
            if changed:
                raise ConfigError(
                    f"cannot resume {out_dir} with a different config (changed: {', '.join(changed)}); "
                    "resume without --config/--set, or start a new run"
                )
        return saved
    if out_dir.exists() and any((out_dir / name).exists() for name in RUN_FILES):
        if not overwrite:
            raise EdgekdError(
                f"{out_dir} already holds a run; use --resume to continue it or --overwrite to start again"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(saved_path, dump_yaml(cfg))
    return cfg


class MetricsLog:
    """``metrics.jsonl``: every stage's per-epoch records, rewritten atomically after each epoch."""

    def __init__(self, path: Path, keep_existing: bool) -> None:
        self.path = path
        self.by_stage: dict[str, list[dict[str, Any]]] = {}
        if keep_existing and path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.by_stage.setdefault(rec["stage"], []).append(rec)

    def update(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from edgekd.train.distributed import world

        self.by_stage[record["stage"]] = list(history)
        if world().main:  # every rank holds the same (all-reduced) records; one writes them
            write_text(self.path, "".join(json.dumps(r) + "\n" for recs in self.by_stage.values() for r in recs))
