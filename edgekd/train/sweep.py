"""Temperature (and α) sweep: one teacher, one distill run per grid point, the winner chosen on val.

Layout of the sweep folder::

    config.yaml      the base config (resolved)
    teacher/         the shared teacher (or ensemble members, or source-domain teacher), trained once
    sweep_teacher.json  the sha256 of the shared teacher's files, outside teacher/: a teacher folder
                     swapped in whole (its own summary.json included) is not the points' teacher
    T4_a0.9/ …       one ordinary distill run per grid point, loading the shared teacher
    sweep.json       every point's val/test accuracy, the winner, the shared teacher's record
    sweep.png        val accuracy against T, one line per α
    best.yaml        the winner's config (teacher.checkpoint → the shared teacher): reproduces it

Only val accuracy chooses; test accuracy is reported, never used. The no-KD baseline does not
depend on T or α, so it is trained in the first point only (except for TAKD with automatic TA
choice, whose every point needs it). Interrupted sweeps continue with ``resume=True``, also after
the sweep folder was moved; not once the shared teacher has changed (``teacher/summary.json``
records its files' sha256, and ``sweep_teacher.json`` beside it the same), since the points already
distilled learned from the old one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json, write_text
from edgekd.config import MAX_TEMPERATURE, MIN_TEMPERATURE, Config, changes, dump_yaml, load_config, validate
from edgekd.errors import ConfigError, EdgekdError
from edgekd.limits import check_number
from edgekd.paths import as_path
from edgekd.ui import log, print_table, warn

DEFAULT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)  # the usual grid (Hinton et al.; methods.md)


def _shown(value: float) -> str:
    """A grid value as a point's folder name shows it (6 significant digits)."""
    return f"{value:g}"


def point_name(temperature: float, alpha: float) -> str:
    return f"T{_shown(temperature)}_a{_shown(alpha)}"


def sweep(
    config: Config | str | Path | None = None,
    out: str | Path | None = None,
    set: Sequence[str] = (),  # noqa: A002 - same name as the CLI's --set
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    alphas: Sequence[float] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Sweep ``temperatures`` × ``alphas`` (default: the config's α) and return ``sweep.json``'s content."""
    from edgekd.train.methods import METHODS, check_method_config
    from edgekd.train.run_folder import prepare_out_dir

    cfg = config if isinstance(config, Config) else load_config(config, set)
    if isinstance(config, Config) and set:
        raise ConfigError("pass overrides through load_config when giving a Config object")
    if cfg.name is None:
        # the points' names derive from it: saved as "run", a resume (which reads config.yaml, whose
        # stem would name a nameless config "config") derives the same names, and the same configs
        cfg = dataclasses.replace(cfg, name="run")
        config = cfg if isinstance(config, Config) else config
    temperatures = list(temperatures)
    alphas = list(alphas if alphas else [cfg.distill.alpha])
    if not temperatures:
        raise ConfigError("sweep: --temperatures needs at least one value")
    for t in temperatures:
        check_number("--temperatures", t, low=MIN_TEMPERATURE, high=MAX_TEMPERATURE, error=ConfigError)
    for a in alphas:
        check_number("--alphas", a, low=0.0, high=1.0, error=ConfigError)
    # + 0.0 turns -0.0 into 0.0: the point's folder is T4_a0, not T4_a-0
    temperatures, alphas = [float(t) for t in temperatures], [float(a) + 0.0 for a in alphas]
    for flag, values in (("--temperatures", temperatures), ("--alphas", alphas)):
        shown = [_shown(v) for v in values]  # two values shown alike would share a point's folder
        twice = sorted({v for v in shown if shown.count(v) > 1})
        if twice:  # one folder per point: a repeated value would train the same point twice
            raise ConfigError(f"sweep: {flag} lists {twice[0]} more than once (to 6 significant digits)")
    check_method_config(cfg)
    method = METHODS.get(cfg.distill.method)
    if not method.needs_teacher:
        raise ConfigError(
            f"sweep: distill.method={cfg.distill.method} uses no teacher: there is no temperature to sweep"
        )
    if not getattr(method, "uses_temperature", True) and len(temperatures) > 1:
        warn(f"distill.method={cfg.distill.method} ignores the temperature: the points differ only in α")
    if not getattr(method, "uses_alpha", True) and len(alphas) > 1:
        warn(f"distill.method={cfg.distill.method} ignores α: the points differ only in T")
    out_dir = as_path(out, "out") if out is not None else Path("runs") / f"{cfg.name or 'run'}-sweep"
    cfg = prepare_out_dir(cfg, out_dir, config, set, resume, overwrite)
    if resume:
        cfg = _legacy_name(cfg, out_dir, [point_name(t, a) for a in alphas for t in temperatures])
    check_method_config(cfg)  # a resumed sweep runs its saved config

    from edgekd.data import dataset_task
    from edgekd.tasks import get_task
    from edgekd.train.run import finished_or_trained

    task = get_task(dataset_task(cfg.data.name))  # selection on val accuracy, or val mean IoU
    val_key, test_key = f"val_{task.metric}", f"test_{task.metric}"
    grid = [(t, a) for a in alphas for t in temperatures]
    if resume:  # before the teacher is trained again
        _check_teacher_kept(out_dir, [point_name(t, a) for t, a in grid])
    teacher_record, teacher_keys = train_shared_teacher(cfg, out_dir / "teacher", resume)
    # checked above when points had started; a teacher trained (again) before any point is theirs
    write_json(out_dir / TEACHER_RECORD, {"sha256": _sums(out_dir / "teacher" / "summary.json")})
    points, baseline = [], None
    for i, (t, a) in enumerate(grid):
        keep_baseline = cfg.distill.baseline and (i == 0 or cfg.distill.takd.ta_select == "auto")
        point_cfg = _point_config(cfg, teacher_keys, t, a, keep_baseline)
        folder = out_dir / point_name(t, a)
        if resume:
            _follow_moved_teacher(folder, point_cfg)
        summary = finished_or_trained(point_cfg, folder, resume)
        points.append(_point(summary, folder, t, a, val_key, test_key))
        baseline = baseline or summary.get("baseline")
    best = max(range(len(points)), key=lambda k: (points[k][val_key], -k))  # ties: the earlier point
    winner = points[best]
    best_cfg = _point_config(cfg, teacher_keys, winner["temperature"], winner["alpha"], cfg.distill.baseline)
    best_cfg = dataclasses.replace(best_cfg, name=f"{cfg.name or 'run'}-best")
    write_text(out_dir / "best.yaml", dump_yaml(best_cfg))
    result = {
        "method": cfg.distill.method,
        "selection": f"highest student val {task.metric_label} (test is reported, never used to choose)",
        "metric": task.metric,  # points, teacher and baseline carry val_<metric> and test_<metric>
        "metric_label": task.metric_label,
        "teacher": teacher_record,
        "baseline": baseline,
        "points": points,
        "winner": winner,
        "best_config": "best.yaml",
        "plot": "sweep.png",
    }
    _plot(result, out_dir / "sweep.png")
    write_json(out_dir / "sweep.json", result)
    _print(result)
    log(f"sweep: wrote {out_dir}/sweep.json, sweep.png, best.yaml")
    return result


def _legacy_name(cfg: Config, out_dir: Path, names: list[str]) -> Config:
    """A sweep started without --config before its config was saved named "run" saved none: read
    back, config.yaml's stem names it "config", while its points were named "run-<point>". Such a
    sweep is resumed under the name its points have, so that an interrupted point continues."""
    if cfg.name != "config":
        return cfg
    for name in names:
        saved = out_dir / name / "config.yaml"
        if saved.is_file() and load_config(saved).name == f"run-{name}":
            return dataclasses.replace(cfg, name="run")
    return cfg


def _point(summary: dict[str, Any], folder: Path, t: float, a: float, val_key: str, test_key: str) -> dict[str, Any]:
    """The point's row of sweep.json, from its run's summary: one read back from a finished point
    may have been edited, and a number missing from it is one line naming the file."""

    def number(*keys: str) -> float:
        value: Any = summary
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EdgekdError(
                f"{folder / 'summary.json'} is malformed: {'.'.join(keys)} is "
                f"{'missing' if value is None else 'not a finite number'}; move {folder} away to train it again"
            )
        return value

    for key in (val_key, test_key) if "baseline" in summary else ():
        number("baseline", key)  # the plot reads the baseline's figures
    row = {
        "temperature": t,
        "alpha": a,
        "val_acc": number("student", "val_acc"),
        "test_acc": number("student", "test_acc"),
        val_key: number("student", val_key),
        test_key: number("student", test_key),
        "epoch": summary["student"].get("epoch"),
        "wall_s": number("wall_s", "total"),
        "run": folder.name,
    }
    if not isinstance(row["epoch"], int) or isinstance(row["epoch"], bool):
        row["epoch"] = None  # for information only: an edited one is dropped, not copied
    return row


TEACHER_RECORD = "sweep_teacher.json"


def _check_teacher_kept(out_dir: Path, names: list[str]) -> None:
    """On resume: the points already started learned from the shared teacher in ``out_dir/teacher``.
    Gone or changed (its files no longer hash as its summary recorded, or its summary no longer
    records what ``sweep_teacher.json`` does), the teacher trained now would not be theirs, and
    best.yaml would name a teacher that did not teach the winner."""
    started = [name for name in names if (out_dir / name / "config.yaml").is_file()]
    why = _teacher_changed(out_dir) if started else None
    if why:
        raise EdgekdError(
            f"cannot resume {out_dir}: {why}, so its teacher is not the one {out_dir / started[0]} learned from; "
            "start a fresh sweep (--overwrite, or another --out)"
        )


def _sums(path: Path) -> Any:
    """The ``sha256`` mapping a teacher record holds (None: a record written before files were hashed)."""
    from edgekd.jsonfile import read_json_object

    sums = read_json_object(path, "start a fresh sweep (--overwrite)").get("sha256")
    if sums is not None and not (
        isinstance(sums, dict)
        and sums
        and all(isinstance(n, str) and Path(n).name == n and isinstance(v, str) for n, v in sums.items())
    ):
        raise EdgekdError(
            f"{path} is malformed (sha256 is not a mapping of file names); start a fresh sweep (--overwrite)"
        )
    return sums


def _teacher_changed(out_dir: Path) -> str | None:
    """Why the shared teacher in ``out_dir/teacher`` is not the one the sweep recorded; None when it is."""
    from edgekd.bundle import sha256_file

    folder = out_dir / "teacher"
    path = folder / "summary.json"
    if not path.is_file():
        return f"{path} is missing"
    sums = _sums(path)
    if sums is None:  # written before the teacher's files were hashed: nothing to compare with
        return None
    record = out_dir / TEACHER_RECORD
    if record.is_file() and _sums(record) != sums:  # missing: a sweep from before the record
        return f"{folder} was replaced (its files are not the ones {record} records)"
    for name, sha in sums.items():
        if not (folder / name).is_file():
            return f"{folder / name} is missing"
        if sha256_file(folder / name) != sha:
            return f"{folder / name} changed"
    return None


# the keys by which a point loads the shared teacher, by absolute path
_TEACHER_PATHS = ("teacher.checkpoint", "distill.ensemble.teacher_checkpoints")


def _follow_moved_teacher(folder: Path, point_cfg: Config) -> None:
    """A point interrupted before its sweep folder was moved names the shared teacher by its old
    absolute path. When that is all that differs from the point's config now (the same
    ``teacher/<file>``, elsewhere; that it is the same teacher was checked by its sha256), the
    point's config.yaml is pointed at the teacher's new place, so that the point resumes."""

    def tails(paths: Any) -> list[tuple[str, ...]]:
        return [Path(p).parts[-2:] for p in ([paths] if isinstance(paths, str) else paths or [])]

    saved_path = folder / "config.yaml"
    if (folder / "summary.json").is_file() or not saved_path.is_file():
        return
    changed = changes(load_config(saved_path), point_cfg)
    if changed and all(key in _TEACHER_PATHS and tails(old) == tails(new) for key, old, new in changed):
        log(f"{folder}: the sweep folder was moved; its config.yaml now names the shared teacher where it is now")
        write_text(saved_path, dump_yaml(point_cfg))


def train_shared_teacher(cfg: Config, folder: Path, resume: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or load) the teacher side of ``cfg`` once, in ``folder``: the teacher, the ensemble
    members or the source-domain teacher, as the method needs. Returns its record and the config
    keys (section → {key: value}) that make any later run load it instead of training it."""
    from edgekd.train.context import RunContext
    from edgekd.train.methods import METHODS

    run = RunContext(cfg, folder, resume, ())
    run.setup()  # the data loaded (a missing or corrupt dataset is an error) before the folder is touched
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", dump_yaml(cfg))
    flow = METHODS.get(cfg.distill.method).flow
    if flow == "ensemble":
        from edgekd.train.ensemble import ensemble_record, train_members

        models, records = train_members(run)
        record = {**ensemble_record(run, models, records), "teachers": records}
        paths = [str((folder / f"{r['name']}.pt").resolve()) for r in records]
        keys = {
            "distill": {"ensemble": {"teacher_checkpoints": tuple(paths), "teachers": (), "teacher_seeds": ()}},
            "teacher": {"epochs": 0},
        }
    else:
        if flow == "domain":
            from edgekd.train.domain import load_source, source_teacher

            _, record = source_teacher(run, load_source(cfg.source, run.data))
        else:
            _, record = run.teacher()
        paths = [str((folder / "teacher.pt").resolve())]
        keys = {"teacher": {"checkpoint": paths[0], "epochs": 0}}
    if not (cfg.teacher.checkpoint or cfg.distill.ensemble.teacher_checkpoints) and run.data.task == "classification":
        # trained here, by this sweep, then loaded by every point from its file: not a teacher from
        # elsewhere, so a weak one is flagged (as a run flags its stages), not stopped at each point
        from edgekd.train.summary import weak_teacher

        n, k = len(run.data.val), run.data.num_classes
        weak = [(r, w) for r in record.get("teachers", [record]) if (w := weak_teacher(r["val_acc"], k, n))]
        for r, line in weak:
            warn(f"NEAR CHANCE: sweep teacher {r.get('name', 'teacher')} ({r.get('arch')}) scores {line}")
        if weak:
            keys.setdefault("distill", {})["allow_weak_teacher"] = True
    from edgekd.bundle import sha256_file

    # what the later runs load, by content: a sweep resumed after the teacher was trained again sees it
    write_json(folder / "summary.json", {"teacher": record, "sha256": {Path(p).name: sha256_file(p) for p in paths}})
    return record, keys


def _point_config(
    cfg: Config, teacher_keys: dict[str, Any], temperature: float, alpha: float, baseline: bool
) -> Config:
    distill_keys = dict(teacher_keys.get("distill", {}))
    if "ensemble" in distill_keys:  # the members by path: keys of distill's ensemble section
        distill_keys["ensemble"] = dataclasses.replace(cfg.distill.ensemble, **distill_keys["ensemble"])
    distill = dataclasses.replace(cfg.distill, temperature=temperature, alpha=alpha, baseline=baseline, **distill_keys)
    teacher = dataclasses.replace(cfg.teacher, **teacher_keys.get("teacher", {}))
    point = dataclasses.replace(
        cfg, name=f"{cfg.name or 'run'}-{point_name(temperature, alpha)}", distill=distill, teacher=teacher
    )
    validate(point)
    return point


def _metric(result: dict[str, Any]) -> tuple[str, str, str]:
    """(val key, test key, short name) of the sweep's selection metric."""
    m = result.get("metric", "acc")
    return f"val_{m}", f"test_{m}", "acc" if m == "acc" else "mIoU"


def _print(result: dict[str, Any]) -> None:
    vk, tk, name = _metric(result)
    rows = [
        [
            p["temperature"],
            p["alpha"],
            f"{100 * p[vk]:.2f}",
            f"{100 * p[tk]:.2f}",
            "← best on val" if p is result["winner"] else "",
            p["run"],
        ]
        for p in result["points"]
    ]
    print_table(
        f"{result['method']} sweep (chosen on val)", ["T", "α", f"val {name} %", f"test {name} %", "", "run"], rows
    )
    w, t = result["winner"], result["teacher"]
    print(
        f"winner: T={w['temperature']:g} α={w['alpha']:g}  val {100 * w[vk]:.2f}  test {100 * w[tk]:.2f}"
        f"  (teacher val {100 * t[vk]:.2f})"
    )


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from edgekd.atomic import write_with

    vk, _, _ = _metric(result)
    label = result.get("metric_label", "accuracy").replace("top-1 ", "")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for alpha in sorted({p["alpha"] for p in result["points"]}):
        pts = sorted((p for p in result["points"] if p["alpha"] == alpha), key=lambda p: p["temperature"])
        ax.plot([p["temperature"] for p in pts], [100 * p[vk] for p in pts], marker="o", label=f"student, α={alpha:g}")
    ax.axhline(100 * result["teacher"][vk], color="gray", linestyle=":", label="teacher")
    if result.get("baseline"):
        ax.axhline(100 * result["baseline"][vk], color="gray", linestyle="--", label="no-KD student")
    w = result["winner"]
    ax.plot([w["temperature"]], [100 * w[vk]], marker="*", markersize=14, color="red", linestyle="none", label="chosen")
    ax.set_xscale("log", base=2)
    temps = sorted({p["temperature"] for p in result["points"]})
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.minorticks_off()
    ax.set_xlabel("temperature T")
    ax.set_ylabel(f"val {label} %")
    ax.set_title(f"{result['method']}: val {label} vs temperature")
    ax.legend(fontsize="small")
    fig.tight_layout()
    write_with(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)
