"""``edgekd search``: the most accurate student that fits a device budget (Optuna).

Layout of the search folder::

    search.json      what is searched: the resolved config, budget, space, trial recipe (a rerun must match)
    study.db         Optuna's SQLite storage (default; --storage puts the study elsewhere)
    rpi_calibration.json   the Pi/host latency ratio of the rpi_ms budget key (--rpi-bench)
    teacher/         the shared teacher, trained once (or loaded from teacher.checkpoint);
                     teacher-r<N>/ one per other input resolution of the space
    teacher_cache/   the teacher's outputs per input resolution, shared by every trial
    candidates/      each candidate's budget figures (params, MACs, int8 flash/arena, latency)
    trials/trial-N/  one short KD run per trained trial (an ordinary run folder)
    final/<cand>/    the best few candidates trained with the config's full recipe
    best/            the winner: a normal run folder (`edgekd export --run DIR/best`)
    pareto.json .md .png   every trial's figures, the Pareto front (val accuracy vs flash and latency)

Every candidate is measured against the budget before training (:mod:`edgekd.search.measure`);
one over budget is recorded and never trained. Val accuracy chooses everything; test accuracy is
only reported. Several processes (``worker=True``, same storage) share one study; a process that
dies mid-trial stops sending its heartbeat, and the trial is then marked failed and queued again
(Optuna's heartbeat and RetryHeartbeatStaleTrialCallback), so finished trials are never lost and
never run twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json
from edgekd.config import Config, from_dict, load_config, to_dict, validate
from edgekd.errors import ConfigError, EdgekdError
from edgekd.jsonfile import cached_json_object, read_json_object
from edgekd.outputs import check_output_dir
from edgekd.paths import as_path
from edgekd.search.budget import Budget, parse_budget
from edgekd.search.space import Candidate, SearchSpace, load_space, space_from_dict
from edgekd.ui import log, warn

SPEC_ATTR = "edgekd_search"  # the study's user attribute holding the spec, for workers
# the trials the study should train (the latest main process's --trials): workers stop there too
TRIALS_ATTR = "edgekd_search_trials"
DEFAULT_TRIALS = 12
TRAINED = ("trained", "pruned")  # trial statuses that cost a training run (what --trials counts)
PRUNERS = ("median", "hyperband", "none")


@dataclasses.dataclass
class _Ctx:
    """What every trial of one process needs."""

    cfg: Config
    budget: Budget
    space: SearchSpace
    out: Path
    trial_epochs: int
    trials: int
    teachers: dict[str, str]  # input resolution key ("native", "24") → the shared teacher checkpoint (absolute path)
    data: Any  # the loaded dataset at the native resolution (class count, channels, augmentation)
    worker_id: str
    rpi_factor: float | None = None  # Pi/host latency ratio of the rpi_ms budget (search/rpi.py)


def search(
    config: Config | str | Path | None = None,
    out: str | Path | None = None,
    set: Sequence[str] = (),  # noqa: A002 - same name as the CLI's --set
    budget: str | dict[str, Any] | Budget | None = None,
    space: str | Path | dict[str, Any] | SearchSpace | None = None,
    trials: int | None = None,
    trial_epochs: int | None = None,
    finalists: int = 3,
    storage: str | None = None,
    study_name: str = "edgekd-search",
    worker: bool = False,
    teacher: str | Path | None = None,
    pruner: str | None = None,
    heartbeat_s: int = 30,
    wait_s: int = 0,
    rpi_bench: str | Path | None = None,
) -> dict[str, Any]:
    """Search the space for the most accurate student inside ``budget``; returns ``pareto.json``'s
    content (the winner under ``"best"``). With ``worker=True`` join the study in ``storage``
    (started by a non-worker search; waiting up to ``wait_s`` seconds for it to be started) and
    only run trials; returns what this worker ran."""
    if trials is not None:
        _check_int("trials", trials, 1, 100_000)
    _check_int("finalists", finalists, 0, 1_000)
    _check_int("heartbeat_s", heartbeat_s, 1, 3_600)
    _check_int("wait_s", wait_s, 0, 7 * 24 * 3_600)
    if wait_s and not worker:
        raise ConfigError("search: --wait is for a worker waiting for the main search to start the study; add --worker")
    if trial_epochs is not None:
        _check_int("trial_epochs", trial_epochs, 1, 100_000)
    if pruner is not None and pruner not in PRUNERS:
        raise ConfigError(f"search: pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    for name, value in (("storage", storage), ("study_name", study_name)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"search: {name} must be a string, got {type(value).__name__}")
    if not study_name or len(study_name) > 200:
        raise ConfigError("search: the study name must be 1 to 200 characters")
    if storage is not None and not storage.startswith(
        ("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")
    ):
        raise ConfigError(
            f"search: --storage must be a database URL (sqlite:///FILE, postgresql://USER@HOST/DB), got {storage!r}"
        )
    if worker:
        if storage is None:
            raise ConfigError(
                "search: --worker joins a study in a shared database: give --storage postgresql://… (the URL the main "
                "search uses)"
            )
        if (
            config is not None
            or set
            or budget is not None
            or space is not None
            or trial_epochs is not None
            or trials is not None
            or rpi_bench is not None
        ):
            raise ConfigError(
                "search: a worker takes config, budget, space, trial count, trial epochs and Pi calibration from the "
                "study; drop --config/--set/--budget/--space/--trials/--trial-epochs/--rpi-bench"
            )
        worker_out = as_path(out, "out") if out is not None else Path("runs") / "search-worker"
        # before connecting: a wrong path is found now, not once the study is there (maybe hours later)
        if teacher is not None and not Path(teacher).is_file():
            raise ConfigError(f"search: --teacher {teacher} is not a file")
        check_output_dir(worker_out, "search worker's trials", _not_a_worker_folder)
        return _worker(
            worker_out,
            storage,
            study_name,
            teacher,
            pruner,
            heartbeat_s,
            wait_s,
        )
    return _main(
        config,
        out,
        set,
        budget,
        space,
        trials if trials is not None else DEFAULT_TRIALS,
        trial_epochs,
        finalists,
        storage,
        study_name,
        teacher,
        pruner or "median",
        heartbeat_s,
        rpi_bench,
    )


def _not_a_search_folder(folder: Path) -> str | None:
    return None if (folder / "search.json").is_file() else "not a search folder: no search.json"


def check_best(out_dir: Path) -> None:
    """``out_dir/best`` is replaced whole by the winner's run files: only a copy of a run's files
    (what an earlier search put there) may be replaced, never a folder or file of the user's."""
    from edgekd.train.run_folder import not_a_run

    best = out_dir / "best"
    if not best.exists() and not best.is_symlink():
        return
    why = "it is not a folder" if best.is_symlink() or not best.is_dir() else not_a_run(best)
    if why is not None:
        raise EdgekdError(
            f"{best} is the search's winner folder, which it replaces, and {why}; move it away and rerun the search"
        )


def _not_a_worker_folder(folder: Path) -> str | None:
    """A worker writes only ``trials/``; the main search's own folder may serve its workers too."""
    if _not_a_search_folder(folder) is None or {p.name for p in folder.iterdir()} <= {"trials"}:
        return None
    return "not a search folder: no search.json, and more than a worker's trials/"


def _rpi_calibration(out_dir: Path, bench_json: str | Path, calibrate) -> dict[str, Any]:
    """The Pi/host ratio, measured once per search folder and bench file: a rerun reuses it (a new
    timing of the reference would move every candidate's estimate a little)."""
    import hashlib

    path = out_dir / "rpi_calibration.json"
    try:
        sha = hashlib.sha256(Path(bench_json).read_bytes()).hexdigest()
    except OSError:
        sha = None  # calibrate() names the problem
    saved = cached_json_object(path) if sha is not None else None  # unreadable: measured again
    if saved is not None and saved.get("bench_sha256") == sha:
        return saved
    return calibrate(bench_json)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"search: {name} must be an integer in [{low}, {high}], got {value!r}")


def _check_method(cfg: Config) -> None:
    from edgekd.data import dataset_task
    from edgekd.train.methods import METHODS, check_method_config

    method = METHODS.get(cfg.distill.method)
    if not method.needs_teacher or method.flow != "standard" or cfg.distill.method == "fitnets":
        raise ConfigError(
            f"search: distill.method={cfg.distill.method} is not searchable; use a logit method (kd, kd_soft, kd_mse), "
            "whose loss does not depend on the student's layers"
        )
    check_method_config(cfg)
    if dataset_task(cfg.data.name) != "classification":
        raise ConfigError(
            f"search: data.name={cfg.data.name} is a {dataset_task(cfg.data.name)} dataset; search ranks classifiers "
            "by val accuracy"
        )


def _main(  # noqa: A002 - `set` as in search()
    config,
    out,
    set,
    budget,
    space,
    trials,
    trial_epochs,
    finalists,
    storage,
    study_name,
    teacher,
    pruner,
    heartbeat_s,
    rpi_bench=None,
) -> dict[str, Any]:
    cfg = config if isinstance(config, Config) else load_config(config, set)
    if isinstance(config, Config) and set:
        raise ConfigError("pass overrides through load_config when giving a Config object")
    _check_method(cfg)
    bud = parse_budget(budget)
    if (bud.rpi_ms is None) != (rpi_bench is None):
        raise ConfigError(
            "search: the rpi_ms budget key is a Pi latency ESTIMATE scaled from a recorded Pi bench: give it with "
            "--rpi-bench BUNDLE/bench/<pi>/bench.json (from `edgekd bench --device rpi`)"
            if rpi_bench is None
            else "search: --rpi-bench calibrates the rpi_ms budget key; add rpi_ms=… to --budget"
        )
    spc = load_space(space)
    epochs = trial_epochs if trial_epochs is not None else max(1, cfg.student.epochs // 5)
    if epochs > cfg.student.epochs:
        raise ConfigError(
            f"search: trial epochs ({epochs}) above the full recipe's student.epochs ({cfg.student.epochs})"
        )
    if teacher is not None:
        cfg = dataclasses.replace(
            cfg, teacher=dataclasses.replace(cfg.teacher, checkpoint=str(Path(teacher).resolve()), epochs=0)
        )
    if cfg.teacher.checkpoint and any(r is not None for r in spc.resolutions):
        raise ConfigError(
            "search: a given teacher serves its own input size; a space with resolutions trains one teacher per "
            "resolution (drop teacher.checkpoint/--teacher)"
        )
    out_dir = as_path(out, "out") if out is not None else Path("runs") / "search"
    spec = {"config": to_dict(cfg), "budget": bud.to_dict(), "space": spc.to_dict(), "trial_epochs": epochs}
    rpi = None
    if rpi_bench is not None:
        from edgekd.search.rpi import rpi_calibration

        rpi = _rpi_calibration(out_dir, rpi_bench, rpi_calibration)
        spec["rpi_bench_sha256"] = rpi["bench_sha256"]  # another Pi bench is another search
    spec_path = out_dir / "search.json"
    if spec_path.is_file():
        saved = read_json_object(spec_path, "it records what this search folder searches: use another --out")
        changed = [k for k in spec if saved.get(k) != spec[k]]
        if changed:
            raise ConfigError(
                f"{out_dir} holds a search with a different {', '.join(changed)}; rerun it as it was, or use another "
                "--out"
            )
        log(f"search: continuing the search in {out_dir}")
    check_output_dir(out_dir, "search", _not_a_search_folder, replace=True)
    check_best(out_dir)
    for path in (teacher, cfg.teacher.checkpoint):
        # now, not after the search folder is written (which a corrected rerun would then refuse)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"search: the teacher checkpoint {path} is not a file")

    from edgekd.data import load_dataset

    data = load_dataset(cfg.data, log=log)
    _check_models(spc, data)
    # a storage given by URL is opened before anything is written or trained: a wrong URL, a
    # server not reached or a file of other tables is one line now, not after the teacher
    opened = _storage(storage, heartbeat_s, tries=1 if storage.startswith("sqlite") else 3) if storage else None
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(spec_path, spec)
    if rpi is not None:
        write_json(out_dir / "rpi_calibration.json", rpi)

    from edgekd.train.sweep import train_shared_teacher

    teachers, records = {}, {}
    for res in spc.resolutions:  # a teacher per input size: it sees the images the student sees
        cfg_r = cfg if res is None else dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=res))
        folder = out_dir / ("teacher" if res is None else f"teacher-r{res}")
        records[res_key(res)], keys = train_shared_teacher(cfg_r, folder, resume=(folder / "config.yaml").is_file())
        teachers[res_key(res)] = keys["teacher"]["checkpoint"]
    teacher_record = records if len(records) > 1 else next(iter(records.values()))
    url = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study = _study(url, study_name, cfg.seed, pruner, heartbeat_s, create=True, storage=opened)
    check_study(study, spc, url)
    stored = study.user_attrs.get(SPEC_ATTR)
    shared = {
        **spec,
        "teachers": {k: {"path": v, "sha256": _sha256(v)} for k, v in teachers.items()},
        "pruner": pruner,
        "rpi": rpi,
    }
    if stored is not None and {k: stored.get(k) for k in spec} != spec:
        raise ConfigError(
            f"study {study_name!r} in {_safe_url(url)} was started with a different config, budget, space or trial "
            "recipe; use another --study-name"
        )
    if stored != shared:
        study.set_user_attr(SPEC_ATTR, shared)
    if study.user_attrs.get(TRIALS_ATTR) != trials:  # a rerun may ask for more; workers follow
        study.set_user_attr(TRIALS_ATTR, trials)
    ctx = _Ctx(cfg, bud, spc, out_dir, epochs, trials, teachers, data, _worker_id(), rpi and rpi["factor"])
    if rpi is not None:
        log(
            f"search: rpi_ms = host_ms × {rpi['factor']:g} ({rpi['reference']}: {rpi['pi_ms']:g} ms on "
            f"{rpi['board']}, {rpi['host_ms']:g} ms here): an estimate"
        )
    log(
        f"search: budget {bud.describe()}; {spc.size()} candidates; {trials} trials of {epochs} epoch(s); study "
        f"{study_name} in {_safe_url(url)}"
    )
    _run_trials(study, ctx, wait_for_others=True, heartbeat_s=heartbeat_s)
    from edgekd.search.report import write_report

    final = _finalists(study, ctx, finalists)
    return write_report(study, ctx, teacher_record, final)


def _worker(out_dir: Path, url: str, study_name: str, teacher, pruner, heartbeat_s, wait_s) -> dict[str, Any]:
    # Workers started together with the main search (a job array, a test) wait for it: the study
    # exists only once the main process has trained its teacher, and holds the spec a moment later.
    # The heavy imports come first, so a waiting worker is ready for a trial as soon as the study is.
    from edgekd.data import load_dataset
    from edgekd.train.run import distill  # noqa: F401 - imported here for the reason above

    if wait_s:
        log(f"search worker: waiting up to {wait_s} s for study {study_name} in {_safe_url(url)}")
    deadline = time.monotonic() + wait_s
    storage = None
    while True:
        try:
            if storage is None:
                _require_sqlite_file(url, study_name)  # opening a missing one would create it
                storage = _storage(url, heartbeat_s)
            study = _study(url, study_name, None, pruner or "median", heartbeat_s, create=False, storage=storage)
            spec = study.user_attrs.get(SPEC_ATTR)
            if spec is None:
                raise EdgekdError(
                    f"study {study_name!r} in {_safe_url(url)} was not started by `edgekd search`; "
                    "start it there first (without --worker)"
                )
            break
        except EdgekdError as exc:
            if time.monotonic() >= deadline:
                if wait_s:
                    raise EdgekdError(f"{exc} (waited {wait_s} s)") from None
                raise
            time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))
    if wait_s:
        log(f"search worker: study {study_name} found in {_safe_url(url)}")
    if pruner is None and spec.get("pruner", "median") != "median":  # the main process's pruner, unless given
        study = _study(url, study_name, None, spec["pruner"], heartbeat_s, create=False, storage=storage)
    cfg = from_dict(Config, spec["config"])
    validate(cfg)
    bud, spc = parse_budget({k: v for k, v in spec["budget"].items() if v is not None}), space_from_dict(spec["space"])
    check_study(study, spc, url)
    if teacher is not None and len(spec["teachers"]) > 1:
        raise ConfigError(
            "search: this study has one teacher per resolution; --teacher names one file (put them at the study's "
            "paths instead)"
        )
    teachers = {}
    for key, t in spec["teachers"].items():
        path = str(Path(teacher).resolve()) if teacher is not None else t["path"]
        if not Path(path).is_file():
            raise EdgekdError(
                f"the study's teacher {path} is not on this machine; copy it here and pass --teacher FILE"
            )
        if _sha256(path) != t["sha256"]:
            raise EdgekdError(f"{path} is not the study's teacher (sha256 differs)")
        teachers[key] = path
    data = load_dataset(cfg.data, log=log)
    _warm_up(spc, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.user_attrs.get(TRIALS_ATTR, DEFAULT_TRIALS)
    rpi = spec.get("rpi")  # the main process's calibration: measured on its host (README: workers on the same hardware)
    ctx = _Ctx(
        cfg, bud, spc, out_dir, spec["trial_epochs"], trials, teachers, data, _worker_id(), rpi and rpi["factor"]
    )
    log(f"search worker {ctx.worker_id}: study {study_name} in {_safe_url(url)}, trials in {out_dir}/trials")
    ran = _run_trials(study, ctx, wait_for_others=False, heartbeat_s=heartbeat_s, wait_until=deadline)
    return {"worker": ctx.worker_id, "trials": ran}


# -- Optuna ----------------------------------------------------------------------------------


def _require_sqlite_file(url: str, study_name: str) -> None:
    """A worker joins a study: an SQLite URL naming no file has none, and is left uncreated."""
    if not url.startswith("sqlite"):
        return
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).is_file():
        raise EdgekdError(
            f"no study {study_name!r} in {_safe_url(url)}: {database} does not exist; start the study with "
            "`edgekd search --storage URL` (without --worker)"
        )


def _storage(url: str, heartbeat_s: int, tries: int = 1):
    """Optuna's RDB storage of ``url`` with heartbeats. ``tries`` > 1 retries a failed opening once a
    second: a worker started at the same time may be creating the tables in the same database."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_sqlite_url(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # edgekd logs each trial itself
    warnings.filterwarnings(
        "ignore", category=optuna.exceptions.ExperimentalWarning
    )  # heartbeats: stable in use since Optuna 2.9
    for attempt in range(tries):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s,  # three missed beats: the process is gone
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
        except Exception as exc:  # noqa: BLE001 - a wrong URL, a server not reached, a missing driver
            if attempt + 1 < tries:
                time.sleep(1.0)
                continue
            from edgekd.errors import first_line

            raise EdgekdError(f"cannot open the study storage {_safe_url(url)}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


def check_sqlite_url(url: str) -> None:
    """A SQLite storage must be a file that is, or becomes, an Optuna study database: an in-memory
    one (``sqlite:///:memory:``, ``sqlite:///``) keeps nothing to continue and its heartbeat thread
    fails on a fresh connection; a database holding other tables is someone else's."""
    if not url.startswith("sqlite"):
        return
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # noqa: BLE001 - not a URL: RDBStorage names the problem
        return
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(
            f"search: --storage {url} is not a database file: give sqlite:////path/to/study.db (an in-memory "
            "database keeps nothing to continue)"
        )
    path = Path(database)
    if path.is_file() and path.stat().st_size:
        tables = _sqlite_tables(path)
        if tables is not None and tables and "studies" not in tables:
            raise ConfigError(
                f"search: {path} is a SQLite database of other tables ({', '.join(sorted(tables)[:3])}), not an "
                "Optuna study: give a new file"
            )


def _sqlite_tables(path: Path) -> set[str] | None:
    """The table names of the SQLite file ``path`` (read-only), or None if it is not one."""
    import sqlite3
    from urllib.parse import quote

    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        return None  # not a database: RDBStorage's own one-line error names it


def _study(url: str, name: str, seed: int | None, pruner: str, heartbeat_s: int, create: bool, storage=None):
    import optuna

    if storage is None:
        storage = _storage(url, heartbeat_s, tries=3 if create and not url.startswith("sqlite") else 1)
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": optuna.pruners.NopPruner,
    }
    if create:
        return optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=sampler,
            pruner=pruners[pruner](),
            load_if_exists=True,
        )
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruners[pruner]())
    except KeyError:
        raise EdgekdError(
            f"no study {name!r} in {_safe_url(url)}; start it with `edgekd search --storage URL` (without --worker)"
        ) from None


def check_study(study, space: SearchSpace, url: str) -> None:
    """The study's trials as data (a database can be edited): each candidate one of the space's,
    each number finite, val accuracy in [0, 1]. A trial that is not is one line naming it, not a
    TypeError in the finalists or a refused NaN in pareto.json."""
    from edgekd.atomic import non_finite_at
    from edgekd.limits import is_finite_number

    known = {c.key: c.to_dict() for c in space.candidates()}
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        cand, key = attrs.get("candidate"), attrs.get("candidate_key")
        problem = None
        if cand is not None and not (isinstance(key, str) and known.get(key) == cand):
            problem = f"its candidate {cand!r:.80} is not the search space's {key!r:.60}"
        elif t.value is not None and not (is_finite_number(t.value) and 0 <= t.value <= 1):
            problem = f"its val accuracy is {t.value!r}"
        elif (at := non_finite_at({"values": t.intermediate_values, "attrs": dict(attrs)})) is not None:
            problem = f"it holds a NaN or infinite number at {at}"
        if problem:
            raise EdgekdError(
                f"the study in {_safe_url(url)} is corrupt: trial {t.number}: {problem}; use another --study-name "
                "(or --out) to start a new one"
            )


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: shown as given
        return url


def res_key(resolution: int | None) -> str:
    return "native" if resolution is None else str(resolution)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _status(t) -> str | None:
    return t.user_attrs.get("status")


def trained_count(study) -> int:
    """Trials that cost a training run (finished or pruned by val accuracy): what --trials counts."""
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if _status(t) in TRAINED
    )


def _enough(study, ctx: _Ctx) -> bool:
    """Stop asking for trials: --trials trained, or every candidate seen (nothing new to try), or a
    cap on draws (a space that is almost all over budget)."""
    from optuna.trial import TrialState

    # the study's count: the main process sets it, and a rerun of it may raise it while workers run
    ctx.trials = study.user_attrs.get(TRIALS_ATTR, ctx.trials)
    if trained_count(study) >= ctx.trials:
        return True
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    seen = {t.user_attrs.get("candidate_key") for t in done if t.user_attrs.get("candidate_key")}
    return len(seen) >= ctx.space.size() or len(done) >= 10 * ctx.trials + ctx.space.size()


def _run_trials(study, ctx: _Ctx, wait_for_others: bool, heartbeat_s: int, wait_until: float = 0.0) -> list[int]:
    """Run trials until the study has enough; the main process then waits for the other workers'
    running trials (failing those whose process died, which queues them again) and runs what was
    queued. A worker that has run nothing yet waits until ``wait_until`` (monotonic) for a rerun of
    the main search to ask for more trials. Returns the numbers of the trials this process ran."""
    import optuna
    from optuna.trial import TrialState

    ran: list[int] = []
    waited = False

    def objective(trial) -> float:
        ran.append(trial.number)
        return _objective(trial, study, ctx)

    def stop(study_, trial) -> None:
        if _enough(study_, ctx):
            study_.stop()

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # what optimize() does before each trial
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting or not _enough(study, ctx):
            try:
                # no gc_after_trial: a full collection with torch loaded took 1-4.5 s per trial here,
                # as long as a tiny trial itself; tensors are freed by reference counting anyway
                study.optimize(objective, callbacks=[stop], catch=(Exception,))
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                # this process's trial was declared stale by another one (its heartbeats came late,
                # e.g. on an overloaded machine) and queued again there: its result is dropped, the
                # retry counts, and this process goes on with the next trial
                log(f"search: a trial of this process was failed by another one and retried there ({exc})")
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not wait_for_others and not ran and time.monotonic() < wait_until:
            if not waited:
                log(f"search worker: the study has its {ctx.trials} trials; waiting for a rerun that asks for more")
                waited = True
            time.sleep(1.0)
            continue
        if not wait_for_others or not running:
            return ran
        log(
            f"search: waiting for {len(running)} trial(s) running in other workers: "
            f"{', '.join(str(t.number) for t in running)}"
        )
        time.sleep(min(heartbeat_s, 10))


def trial_config(ctx: _Ctx, cand: Candidate, epochs: int, name: str, cached_views: bool) -> Config:
    """The run config of ``cand``: the shared teacher loaded, no baseline, ``epochs`` of training.
    With ``cached_views`` an augmented dataset gets ``epochs`` fixed views (each epoch still sees
    fresh crops and flips), so the teacher's outputs are computed once and shared across trials."""
    cfg = ctx.cfg
    data = cfg.data
    if cand.resolution is not None:
        data = dataclasses.replace(data, image_size=cand.resolution)
    runtime = cfg.runtime
    if cached_views:
        if ctx.data.augment != "none" and data.views is None:
            data = dataclasses.replace(data, views=epochs)
        # one cache per input size, shared by every trial (a file is keyed by teacher, data and transform)
        shared = (ctx.out / "teacher_cache" / f"r{res_key(cand.resolution)}").resolve()
        runtime = dataclasses.replace(runtime, teacher_cache_dir=str(shared))
    out = dataclasses.replace(
        cfg,
        name=name,
        data=data,
        teacher=dataclasses.replace(cfg.teacher, checkpoint=ctx.teachers[res_key(cand.resolution)], epochs=0),
        student=dataclasses.replace(cfg.student, arch=cand.arch, kwargs=cand.kwargs, epochs=epochs, checkpoint=None),
        # the shared teacher was checked on val once, where the search loaded it (a given
        # teacher.checkpoint), or trained by the search (flagged there when weak): not again per trial
        distill=dataclasses.replace(cfg.distill, baseline=False, select="best_val", allow_weak_teacher=True),
        runtime=runtime,
    )
    validate(out)
    return out


def _objective(trial, study, ctx: _Ctx) -> float:
    import optuna
    from optuna.trial import TrialState

    from edgekd.search.measure import early_violations, measure_candidate

    # a retried trial (queued again after its process died) arrives with the dead one's attributes
    first = trial.user_attrs.get("number")
    if first is not None and first != trial.number:
        trial.set_user_attr("retry_of", first)
        log(f"search: trial {trial.number} retries trial {first}, whose process stopped mid-trial")
    trial.set_user_attr("number", trial.number)
    cand = ctx.space.suggest(trial)
    trial.set_user_attr("candidate", cand.to_dict())
    trial.set_user_attr("candidate_key", cand.key)
    trial.set_user_attr("worker", ctx.worker_id)
    d = ctx.data
    figures = measure_candidate(
        cand,
        ctx.budget,
        num_classes=d.num_classes,
        in_channels=d.in_channels,
        native_size=tuple(d.image_size),
        backend=ctx.cfg.export.backend,
        cache_dir=ctx.out / "candidates",
        rpi_factor=ctx.rpi_factor,
    )
    trial.set_user_attr("figures", {k: v for k, v in figures.items() if k not in ("candidate", "version")})
    # stopped before the export: the PyTorch figures and the bounds they give are known, and enough
    over = early_violations(figures, ctx.budget) if figures.get("early_stop") else ctx.budget.violations(figures)
    if figures.get("tflm_error"):
        over.append(f"TFLite Micro: {figures['tflm_error']}")
    if over:
        trial.set_user_attr("status", "over_budget")
        trial.set_user_attr("violations", over)
        log(f"search: trial {trial.number} {cand.key} over budget ({'; '.join(over)}): not trained")
        raise optuna.TrialPruned("over budget")
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.user_attrs.get("candidate_key") == cand.key and _status(t) in TRAINED:
            # a candidate already trained (or pruned) is answered from that trial, not trained again
            trial.set_user_attr("status", "duplicate")
            trial.set_user_attr("duplicate_of", t.number)
            log(f"search: trial {trial.number} {cand.key} repeats trial {t.number}: its result, no training")
            if t.state == TrialState.PRUNED:
                raise optuna.TrialPruned(f"repeats pruned trial {t.number}")
            return float(t.value)
    folder = ctx.out / "trials" / f"trial-{trial.number:04d}"
    run_cfg = trial_config(
        ctx, cand, ctx.trial_epochs, f"{ctx.cfg.name or 'run'}-trial{trial.number}", cached_views=True
    )
    trial.set_user_attr("status", "training")
    trial.set_user_attr("run", str(folder))
    flash = f", {figures['flash_kb']:.1f} KB flash" if "flash_kb" in figures else ""
    log(
        f"search: trial {trial.number} {cand.key} ({figures['params']:,} params{flash}): {ctx.trial_epochs} epoch(s) "
        f"in {folder} [{ctx.worker_id}]"
    )

    def report(record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if record.get("stage") != "student":
            return
        trial.report(float(record["val_acc"]), int(record["epoch"]))
        if trial.should_prune():
            trial.set_user_attr("status", "pruned")
            raise optuna.TrialPruned(f"val acc {record['val_acc']:.4f} at epoch {record['epoch']}")

    from edgekd.train.run import distill

    summary = distill(run_cfg, out=folder, overwrite=True, on_epoch=[report])
    s = summary["student"]
    trial.set_user_attr("test_acc", s["test_acc"])  # reported, never used to choose
    trial.set_user_attr("wall_s", summary["wall_s"]["total"])
    trial.set_user_attr("status", "trained")
    log(f"search: trial {trial.number} {cand.key}: val acc {s['val_acc']:.4f}")
    return float(s["val_acc"])


def _warm_up(space: SearchSpace, data) -> None:
    """Load what a trial's first steps would load on first use, before a worker says it is ready:
    torch with every candidate built once (which also checks that this machine's edgekd builds them)
    and torch's FLOP counter (1.4 s on its first use here, after the imports). A main process has
    all of it loaded when it asks for trials; a worker without this lost the first trials of a rerun
    to it, taking 3-5 s on a loaded 2-core machine to reach its first one."""
    import torch

    from edgekd.models import count_macs

    _check_models(space, data)
    count_macs(torch.nn.Conv2d(1, 1, 1), (1, 1, 1, 1))


def _check_models(space: SearchSpace, data) -> None:
    """Every (arch, width, resolution) of the space builds for this data: a bad width or a
    resolution a model cannot take is an error before anything is written."""
    import torch

    from edgekd.models import create_model

    for cand in space.candidates():
        size = tuple(data.image_size) if cand.resolution is None else (cand.resolution, cand.resolution)
        try:
            model = create_model(cand.arch, data.num_classes, data.in_channels, size, **cand.kwargs).eval()
            with torch.no_grad():
                y = model(torch.zeros(1, data.in_channels, *size))
        except Exception as exc:  # noqa: BLE001 - any construction/forward error is the space's
            from edgekd.errors import first_line

            raise ConfigError(
                f"space: {cand.arch} with width {cand.width} at {size[0]}x{size[1]} does not build: {first_line(exc)}"
            ) from None
        if tuple(y.shape) != (1, data.num_classes):
            raise ConfigError(
                f"space: {cand.arch} gives output {tuple(y.shape)}, not (1, {data.num_classes}) class logits"
            )


# -- the full recipe for the best few ------------------------------------------------------------


def _finalists(study, ctx: _Ctx, k: int) -> list[dict[str, Any]]:
    """Train the ``k`` best in-budget candidates (trial val accuracy) with the config's full
    recipe in ``final/<candidate>/``; the best on val becomes ``best/``."""
    from optuna.trial import TrialState

    from edgekd.train.run import distill

    best_by_cand: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if _status(t) == "trained" and (
            t.user_attrs["candidate_key"] not in best_by_cand
            or t.value > best_by_cand[t.user_attrs["candidate_key"]].value
        ):
            best_by_cand[t.user_attrs["candidate_key"]] = t
    ranked = sorted(best_by_cand.values(), key=lambda t: (-t.value, t.number))[:k]
    results = []
    for t in ranked:
        cand = Candidate(**t.user_attrs["candidate"])
        folder = ctx.out / "final" / cand.key
        cfg = trial_config(ctx, cand, ctx.cfg.student.epochs, f"{ctx.cfg.name or 'run'}-{cand.key}", cached_views=False)
        if (
            (folder / "summary.json").is_file()
            and (folder / "config.yaml").is_file()
            and load_config(folder / "config.yaml") == cfg
        ):
            log(f"search: final {cand.key} already trained in {folder}")
            summary = read_json_object(
                folder / "summary.json", f"move {folder} away and rerun the search to train that finalist again"
            )
        else:
            resume = (folder / "config.yaml").is_file() and load_config(folder / "config.yaml") == cfg
            log(
                f"search: final {cand.key} (trial {t.number}, val {t.value:.4f}): full recipe, {cfg.student.epochs} "
                f"epochs → {folder}"
            )
            summary = distill(cfg, out=folder, resume=resume, overwrite=not resume)
        s = summary["student"]
        results.append(
            {
                "trial": t.number,
                "candidate": cand.to_dict(),
                "candidate_key": cand.key,
                "run": str(folder),
                "trial_val_acc": t.value,
                "val_acc": s["val_acc"],
                "test_acc": s["test_acc"],
                "epochs": cfg.student.epochs,
            }
        )
    if results:
        import shutil

        from edgekd.atomic import atomic_dir

        win = max(results, key=lambda r: (r["val_acc"], r["trial_val_acc"]))
        win["best"] = True
        check_best(ctx.out)  # again: it may have changed during the trials
        with atomic_dir(ctx.out / "best") as tmp:
            for p in Path(win["run"]).iterdir():
                if p.is_file():
                    shutil.copy2(p, tmp / p.name)  # the run files; not the teacher output cache
        log(f"search: best {win['candidate_key']} val {win['val_acc']:.4f} → {ctx.out / 'best'}")
    elif k:
        warn("search: no trained candidate fits the budget: no finalist, no best/")
    return results
