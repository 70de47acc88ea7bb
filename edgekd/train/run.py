"""The distill stage: teacher (trained or loaded) → KD student, plus the no-KD baseline student.

Outputs in the run folder::

    config.yaml      the resolved config (reproduces the run)
    teacher.pt       student.pt  baseline.pt     selected weights, each loadable alone
    *_best.pt *_last.pt                          best-on-val / last epoch (last holds training state)
    metrics.jsonl    one JSON record per stage × epoch
    summary.json     val/test accuracy (+ mean IoU for segmentation), params, MACs per model; wall time per stage

Methods with more stages (TAKD links ``ta1.pt``…, ensemble members ``teacher1.pt``…, the FitNets
hint stage ``student_hint.pt``, a fine-tuned domain teacher) add their own named stages and
summary sections; the orchestration of each lives in :mod:`edgekd.train.flows`.

The stage is split by job: the run folder's life cycle (:mod:`edgekd.train.run_folder`), the run
context flows compose (:mod:`edgekd.train.context`), its teacher and student stages
(:mod:`edgekd.train.teacher_stage`, :mod:`edgekd.train.student_stage`) and the summary
(:mod:`edgekd.train.summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.config import Config, load_config
from edgekd.errors import ConfigError
from edgekd.paths import as_path
from edgekd.train.context import RunContext
from edgekd.train.run_folder import RUN_FILES, check_new_run, default_out, resumed_config, start_run_dir

__all__ = ["RUN_FILES", "RunContext", "default_out", "distill", "finished_or_trained"]


def distill(
    config: Config | str | Path | None = None,
    out: str | Path | None = None,
    set: Sequence[str] = (),  # noqa: A002 - same name as the CLI's --set
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run the distill stage and return ``summary.json``'s content.

    ``config`` is a :class:`Config`, a YAML path or None (defaults); ``set`` holds ``key=value``
    overrides. ``resume`` continues the run in ``out`` from its last checkpoints (its saved config
    is used; a different one is an error, naming each changed key). ``overwrite`` replaces an
    existing run folder.

    Everything that can fail on the input is checked before the folder is touched
    (:mod:`edgekd.train.preflight`): the config, every name it holds, the data, every model built
    for that data, every checkpoint it names. Only then is an old run replaced (``overwrite``,
    and only an edgekd run folder) and ``config.yaml`` written.
    """
    if isinstance(config, Config) and set:
        raise ConfigError("pass overrides through load_config when giving a Config object")
    cfg = config if isinstance(config, Config) else load_config(config, set)
    from edgekd.train import distributed
    from edgekd.train.preflight import preflight, resolve_names

    out_dir = as_path(out, "out") if out is not None else default_out(cfg)
    world = distributed.init(cfg.runtime.device)  # torchrun: join the process group first
    if resume:
        cfg = resumed_config(out_dir, config, set)
    elif world.main:  # the others could see the folder rank 0 has already started
        check_new_run(cfg, out_dir, overwrite)
    from edgekd.models import factory_search_path

    # a `module:factory` the config names is found in the current folder and beside the config file
    config_dir = Path(config).parent if isinstance(config, (str, Path)) else None
    with factory_search_path([Path.cwd(), *([config_dir] if config_dir else [])]):
        resolve_names(cfg)
        if cfg.log.tensorboard:
            from edgekd.train.tensorboard import require_tensorboard

            require_tensorboard()
        run = RunContext(cfg, out_dir, resume, on_epoch)
        run.setup()
        preflight(run)
        if world.main:
            start_run_dir(cfg, out_dir, resume)
        distributed.barrier()  # the folder exists for every rank
        return run.execute()


def finished_or_trained(cfg: Config, folder: Path, resume: bool) -> dict[str, Any]:
    """One run of a multi-run job (a sweep's point, a benchmark's row or seed): with ``resume`` a
    finished run's summary is read back and an interrupted one continued; otherwise (or with no
    run there yet) it is trained from scratch, replacing a half-written edgekd run folder."""
    from edgekd.jsonfile import read_json_object
    from edgekd.ui import log

    if resume and (folder / "summary.json").is_file():
        log(f"{folder}: already complete")
        return read_json_object(folder / "summary.json", f"move {folder} away to train it again")
    if resume and (folder / "config.yaml").is_file():
        return distill(cfg, out=folder, resume=True)
    return distill(cfg, out=folder, overwrite=True)
