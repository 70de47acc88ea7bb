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
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json, write_text
from edgekd.config import Config, StageConfig, diff, dump_yaml, load_config, to_dict
from edgekd.errors import ConfigError, EdgekdError
from edgekd.tasks import get_task
from edgekd.ui import Timer, log, print_table

RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl")


def default_out(config: Config) -> Path:
    return Path("runs") / (config.name or "run")


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
    is used; a different one is an error). ``overwrite`` replaces an existing run folder.
    """
    cfg = config if isinstance(config, Config) else load_config(config, set)
    if isinstance(config, Config) and set:
        raise ConfigError("pass overrides through load_config when giving a Config object")
    from edgekd.train.methods import check_method_config

    from edgekd.train import distributed

    out_dir = Path(out) if out is not None else default_out(cfg)
    check_method_config(cfg)  # before the folder is touched: a wrong key costs nothing
    world = distributed.init(cfg.runtime.device)  # torchrun: join the process group first
    if world.main:
        cfg = _prepare_out_dir(cfg, out_dir, config is not None or bool(set), resume, overwrite)
    distributed.barrier()  # the folder (and, resuming, its saved config) exists for every rank
    if not world.main and resume:
        cfg = load_config(out_dir / "config.yaml")
    check_method_config(cfg)  # a resumed run runs its saved config
    return _Run(cfg, out_dir, resume, on_epoch).execute()


def _prepare_out_dir(cfg: Config, out_dir: Path, explicit: bool, resume: bool, overwrite: bool) -> Config:
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
            raise EdgekdError(f"{out_dir} already holds a run; use --resume to continue it or --overwrite to start again")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(saved_path, dump_yaml(cfg))
    return cfg


class _MetricsLog:
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


class _Run:
    """One run folder: the data, the device, and the helpers that every flow composes.

    A flow (``edgekd.train.flows.FLOWS``, chosen by the method) calls :meth:`teacher`,
    :meth:`train`, :meth:`baseline`… in its own order and returns the summary's model records.
    Every trained model is a named stage (``<name>.pt``, ``<name>_last.pt``), so resuming skips
    finished stages and continues the interrupted one, whatever the flow.
    """

    def __init__(self, cfg: Config, out_dir: Path, resume: bool, on_epoch: Sequence[Any]) -> None:
        self.cfg, self.out_dir, self.resume = cfg, out_dir, resume
        self.metrics = _MetricsLog(out_dir / "metrics.jsonl", keep_existing=resume)
        self.on_epoch = [self.metrics.update, *on_epoch]
        self.wall: dict[str, float] = {}  # stage name → training seconds (0 for loaded models)

    def setup(self) -> None:
        from edgekd.data import load_dataset
        from edgekd.train.runtime import configure

        cfg = self.cfg
        self.rt = configure(cfg.runtime, cfg.seed)
        log(f"distill: run {self.out_dir} on {self.rt.describe()}")
        self.data = load_dataset(cfg.data, log=log)
        log_data(self.data)

    def execute(self) -> dict[str, Any]:
        import torch

        from edgekd.train.flows import FLOWS
        from edgekd.train.methods import METHODS

        total = Timer()
        cfg = self.cfg
        method_cls = METHODS.get(cfg.distill.method)
        self.setup()
        summary: dict[str, Any] = FLOWS.get(method_cls.flow)(self)
        self.wall["total"] = round(total.elapsed, 2)
        summary["wall_s"] = self.wall
        summary["distill"] = {k: to_dict(getattr(cfg.distill, k)) for k in ("method", "temperature", "alpha", *method_cls.keys)}
        summary["task"] = self.data.task
        summary["data"] = {k: v for k, v in self.data.describe().items() if k != "classes"}
        summary["device"] = self.rt.describe()
        summary["torch"] = torch.__version__
        if self.rt.world.main:
            write_json(self.out_dir / "summary.json", summary)
            print_summary(summary)
            models = sorted(p.name for p in self.out_dir.glob("*.pt") if not p.stem.endswith(("_last", "_best")))
            log(f"distill: wrote {self.out_dir}/summary.json, {', '.join(models)}")
        return summary

    @property
    def device(self):
        return self.rt.device

    @property
    def amp(self):
        return self.rt.amp

    # -- stages ------------------------------------------------------------------------------

    def done(self, name: str) -> dict[str, Any] | None:
        """A finished stage's checkpoint, when resuming a run that already completed it."""
        from edgekd.checkpoint import load_checkpoint

        path = self.out_dir / f"{name}.pt"
        if self.resume and path.is_file():
            ckpt = load_checkpoint(path)
            if ckpt.get("complete"):
                log(f"{name}: already complete in {path}")
                return ckpt
        return None

    def teacher(self, data=None, name: str = "teacher", recipe: StageConfig | None = None, seed: int | None = None):
        """(frozen teacher fed ``data``'s batches, its record): loaded from ``recipe.checkpoint`` or trained."""
        from edgekd.checkpoint import build_model

        data = data or self.data
        recipe = recipe or self.cfg.teacher
        done = self.done(name)
        if done is not None:
            self.wall[name] = done["metrics"]["wall_s"]
            return self.frozen(build_model(done), done, data), done["metrics"]
        if recipe.checkpoint:
            model, result = self.load_teacher(recipe.checkpoint, name=name, data=data, recipe=recipe)
            self.wall[name] = 0.0
            return model, result
        result = self.train(name, recipe, self.task_method, None, data=data, seed=seed)
        return self.load(name, data), result

    def load(self, name: str, data=None, quiet: bool = False):
        """Finished stage ``<name>.pt`` as a frozen model fed ``data``'s batches (the next stage's teacher)."""
        from edgekd.checkpoint import load_model

        model, ckpt = load_model(self.out_dir / f"{name}.pt")
        return self.frozen(model, ckpt, data or self.data, quiet)

    @staticmethod
    def frozen(model, ckpt: dict[str, Any], data, quiet: bool = False):
        """Eval mode, no gradients, and re-normalized input when ``data`` is normalized differently."""
        from edgekd.train.teachers import with_input_stats

        model = with_input_stats(model, ckpt, data, log=None if quiet else log).eval()
        model.requires_grad_(False)
        return model

    def load_teacher(self, path: str, name: str = "teacher", data=None, recipe: StageConfig | None = None):
        """A given teacher checkpoint: checked against the data, evaluated, copied into the run."""
        from edgekd.checkpoint import build_model, check_compatible, load_checkpoint, load_weights, model_payload, save_checkpoint
        from edgekd.models import create_model

        data = data or self.data
        data_info = data.describe()
        ckpt = load_checkpoint(path)
        if ckpt["format"] == "state_dict":  # weights from elsewhere: the configured arch, this data's input
            t = recipe or self.cfg.teacher
            model = create_model(t.arch, data.num_classes, data.in_channels, data.image_size, **t.kwargs)
            load_weights(model, ckpt["state_dict"], path)
            ckpt = model_payload(model, t.arch, t.kwargs, data_info, name)
        else:
            check_compatible(ckpt, data_info, path)
            model = build_model(ckpt, path)
        model = self.frozen(model, ckpt, data)
        result = self.score(model, ckpt["arch"], data, checkpoint=f"{name}.pt")
        ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "edgekd_version", "train_state")}
        ckpt.update(role=name, metrics=result, complete=True, source=str(path))
        save_checkpoint(self.out_dir / f"{name}.pt", ckpt)
        key = f"val_{get_task(data.task).metric}"
        log(f"{name}: loaded {path} ({ckpt['arch']}), {key} {result[key]:.4f}")
        return model, result

    def evaluate(self, model, data=None) -> dict[str, float]:
        """``{val_acc, test_acc}`` (+ ``val_iou, test_iou`` for segmentation) of ``model`` on ``data``, rounded like every record."""
        from edgekd.train.evaluate import evaluate
        from edgekd.train.trainer import interleaved, eval_batches, prefixed

        d, bs = data or self.data, self.cfg.data.eval_batch_size
        model.to(self.device)
        v = evaluate(model, eval_batches(d.val, d, bs, self.rt), self.amp, d.task)
        t = evaluate(model, eval_batches(d.test, d, bs, self.rt), self.amp, d.task)
        return interleaved(prefixed("val", v), prefixed("test", t))

    def accuracy(self, model, data=None) -> tuple[float, float]:
        """(val, test) accuracy of ``model`` on ``data``, rounded like every record."""
        m = self.evaluate(model, data)
        return m["val_acc"], m["test_acc"]

    def score(self, model, arch: str, data=None, checkpoint: str = "teacher.pt") -> dict[str, Any]:
        """The record of a model that was not trained here (epochs 0, wall 0)."""
        from edgekd.models import count_macs, count_params

        d = data or self.data
        return {
            "arch": arch,
            "params": count_params(model),
            "macs": count_macs(model, (1, d.in_channels, *d.image_size)),
            **self.evaluate(model, d),
            "epochs": 0,
            "wall_s": 0.0,
            "checkpoint": checkpoint,
        }

    def train(
        self,
        name: str,
        recipe: StageConfig,
        method: Any,
        teacher,
        *,
        data=None,
        seed: int | None = None,
        init: str | Path | None = None,
        select: str | None = None,
        method_name: str | None = None,
    ) -> dict[str, Any]:
        """Train stage ``name``, or return its record when a resumed run already finished it.

        ``method`` is a registry name or a built :class:`DistillMethod` (``method_name`` is then
        what the checkpoint records); ``data`` the training data (default: the run's); ``init``
        a checkpoint whose weights start the model (default: ``recipe.checkpoint``, students only).
        """
        import torch

        from edgekd.models import create_model
        from edgekd.train.methods import build_method
        from edgekd.train.trainer import Stage, train_stage

        done = self.done(name)
        if done is not None:
            self.wall[name] = done["metrics"]["wall_s"]
            return done["metrics"]
        cfg, d = self.cfg, data or self.data
        seed = cfg.seed if seed is None else seed
        if isinstance(method, str):
            method_name, method = method, build_method(method, cfg.distill, recipe)
        torch.manual_seed(seed)  # student and baseline start from identical weights
        model = create_model(recipe.arch, d.num_classes, d.in_channels, d.image_size, **recipe.kwargs)
        check_output(model, d, recipe.arch)
        if init is None and recipe.checkpoint and not name.startswith("teacher"):
            init = recipe.checkpoint
        if init:
            from edgekd.checkpoint import check_compatible, load_checkpoint, load_weights

            ckpt = load_checkpoint(init)
            if ckpt["format"] != "state_dict":
                check_compatible(ckpt, d.describe(), init)
            load_weights(model, ckpt["state_dict"], init)
        extra: dict[str, Any] = {"method": method_name}
        if method.needs_teacher:
            extra["distill"] = {"temperature": cfg.distill.temperature, "alpha": getattr(method, "alpha", cfg.distill.alpha)}
        stage = Stage(
            name=name,
            arch=recipe.arch,
            kwargs=dict(recipe.kwargs),
            recipe=recipe,
            method=method,
            teacher=teacher if method.needs_teacher else None,
            batch_size=cfg.data.batch_size,
            eval_batch_size=cfg.data.eval_batch_size,
            views=cfg.data.views,
            workers=cfg.data.workers,
            extra=extra,
        )
        log(f"{name}: {recipe.arch} with {method_name} for {recipe.epochs} epochs")
        result = train_stage(
            stage, model, d, self.out_dir, self.rt, seed, select or cfg.distill.select, self.resume, self.on_epoch
        )
        self.wall[name] = result["wall_s"]
        return result

    def baseline(self, data=None) -> dict[str, Any]:
        """The same student without KD: identical recipe, seed and data, hard labels only."""
        return self.train("baseline", self.cfg.student, self.task_method, None, data=data)

    @property
    def task_method(self) -> str:
        """The hard-label loss of teachers and baselines: ``ce``, or ``bce`` for sigmoid-output methods."""
        from edgekd.train.methods import METHODS

        return METHODS.get(self.cfg.distill.method).task_method


def check_output(model, data, arch: str) -> None:
    """A model whose output does not fit the task (a classifier on masks) fails here, before training."""
    import torch

    was_training = model.training
    model.eval()  # one batch-1 forward: no batch-norm statistics move, no random numbers drawn
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, data.in_channels, *data.image_size))
    finally:
        model.train(was_training)
    if isinstance(out, torch.Tensor):
        get_task(data.task).check_model_output(tuple(out.shape), data.num_classes, data.image_size, arch)


def log_data(d) -> None:
    targets = f"{d.num_classes} classes" if d.task == "classification" else f"{d.task} ({', '.join(d.classes)} masks)"
    log(
        f"data: {d.name} {d.in_channels}x{d.image_size[0]}x{d.image_size[1]}, {targets}, "
        f"train/val/test {len(d.train)}/{len(d.val)}/{len(d.test)}, augment {d.augment}"
        + (f", shift {d.shift}" if d.shift != "none" else "")
    )


MODEL_COLUMNS = ["model", "arch", "params", "MACs", "val acc %", "test acc %", "epochs", "wall s"]


def model_columns(task: str = "classification") -> list[str]:
    """The summary table's columns: the task's metric columns between MACs and epochs."""
    return [*MODEL_COLUMNS[:4], *(header for _, header in get_task(task).summary_columns), *MODEL_COLUMNS[-2:]]


def _model_row(name: str, r: dict[str, Any], task: str = "classification") -> list[Any]:
    metrics = [_pct(r[key]) if key in r else "—" for key, _ in get_task(task).summary_columns]
    return [name, r["arch"], r["params"], r["macs"], *metrics, r["epochs"], round(r["wall_s"], 1)]


def print_summary(summary: dict[str, Any]) -> None:
    task = get_task(summary.get("task"))
    rows = [_model_row(m["name"], m) for m in summary.get("teachers", [])]  # ensemble members first
    for name in ("teacher_source", "teacher", "student", "student_qat", "baseline"):
        r = summary.get(name)
        if r:
            rows.append(_model_row(name, r, task.name))
    print_table("distill summary", model_columns(task.name), rows)
    links = summary.get("links", [])
    if links:
        auto = any("chosen" in r for r in links)  # automatic TA choice: mark the kept candidate
        print_table(
            "TAKD links (teacher → student)",
            ["link", "teacher", *MODEL_COLUMNS[1:], *(["chosen"] if auto else [])],
            [[r["name"], r["teacher"], *_model_row(r["name"], r)[1:], *(["yes" if r.get("chosen") else ""] if auto else [])] for r in links],
        )
    domains = summary.get("domains")
    if domains:
        src, tgt = domains["source"], domains["target"]
        names = [n for n in tgt["accuracy"] if n in src["accuracy"]]
        print_table(
            f"accuracy per domain (source {_domain(src)}, target {_domain(tgt)})",
            ["model", "source val %", "source test %", "target val %", "target test %"],
            [[n, *(_pct(d["accuracy"][n][k]) for d in (src, tgt) for k in ("val_acc", "test_acc"))] for n in names],
        )
    if "baseline" in summary:
        key = f"test_{task.metric}"
        gain = 100 * (summary["student"][key] - summary["baseline"][key])
        what = "" if task.metric == "acc" else f" ({task.metric_label})"
        print(f"KD gain over the no-KD baseline on test{what}: {gain:+.2f} points")


def _domain(d: dict[str, Any]) -> str:
    return d["dataset"] + (f" ({d['shift']})" if d.get("shift", "none") != "none" else "")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"
