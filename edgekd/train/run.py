"""The distill stage: teacher (trained or loaded) → KD student, plus the no-KD baseline student.

Outputs in the run folder::

    config.yaml      the resolved config (reproduces the run)
    teacher.pt       student.pt  baseline.pt     selected weights, each loadable alone
    *_best.pt *_last.pt                          best-on-val / last epoch (last holds training state)
    metrics.jsonl    one JSON record per stage × epoch
    summary.json     val/test accuracy, params, MACs per model; wall time per stage
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json, write_text
from edgekd.config import Config, StageConfig, diff, dump_yaml, load_config
from edgekd.errors import CheckpointError, ConfigError, EdgekdError
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
    out_dir = Path(out) if out is not None else default_out(cfg)
    cfg = _prepare_out_dir(cfg, out_dir, config is not None or bool(set), resume, overwrite)
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
        self.by_stage[record["stage"]] = list(history)
        write_text(self.path, "".join(json.dumps(r) + "\n" for recs in self.by_stage.values() for r in recs))


class _Run:
    def __init__(self, cfg: Config, out_dir: Path, resume: bool, on_epoch: Sequence[Any]) -> None:
        self.cfg, self.out_dir, self.resume = cfg, out_dir, resume
        self.metrics = _MetricsLog(out_dir / "metrics.jsonl", keep_existing=resume)
        self.on_epoch = [self.metrics.update, *on_epoch]

    def execute(self) -> dict[str, Any]:
        import torch

        from edgekd.data import load_dataset
        from edgekd.train.runtime import amp_dtype, configure

        total = Timer()
        cfg = self.cfg
        self.device = configure(cfg.runtime, cfg.seed)
        self.amp = amp_dtype(cfg.runtime.amp, self.device)
        log(f"distill: run {self.out_dir} on {self.device}" + (f" ({self.amp})" if self.amp else ""))
        self.data = load_dataset(cfg.data, log=log)
        d = self.data
        log(
            f"data: {d.name} {d.in_channels}x{d.image_size[0]}x{d.image_size[1]}, {d.num_classes} classes, "
            f"train/val/test {len(d.train)}/{len(d.val)}/{len(d.test)}, augment {d.augment}"
        )
        summary: dict[str, Any] = {}
        wall: dict[str, float] = {}

        teacher, summary["teacher"] = self._teacher()
        wall["teacher"] = summary["teacher"]["wall_s"]
        teacher.requires_grad_(False)
        summary["student"] = self._train("student", cfg.student, cfg.distill.method, teacher)
        wall["student"] = summary["student"]["wall_s"]
        if cfg.distill.baseline:
            summary["baseline"] = self._train("baseline", cfg.student, "ce", None)
            wall["baseline"] = summary["baseline"]["wall_s"]
        wall["total"] = round(total.elapsed, 2)
        summary["wall_s"] = wall
        summary["distill"] = {"method": cfg.distill.method, "temperature": cfg.distill.temperature, "alpha": cfg.distill.alpha}
        summary["data"] = {k: v for k, v in d.describe().items() if k != "classes"}
        summary["device"] = str(self.device)
        summary["torch"] = torch.__version__
        write_json(self.out_dir / "summary.json", summary)
        print_summary(summary)
        log(f"distill: wrote {self.out_dir}/summary.json, student.pt, teacher.pt" + (", baseline.pt" if cfg.distill.baseline else ""))
        return summary

    # -- stages ------------------------------------------------------------------------------

    def _done(self, name: str) -> dict[str, Any] | None:
        """A finished stage's result, when resuming a run that already completed it."""
        from edgekd.checkpoint import load_checkpoint

        path = self.out_dir / f"{name}.pt"
        if self.resume and path.is_file():
            ckpt = load_checkpoint(path)
            if ckpt.get("complete"):
                log(f"{name}: already complete in {path}")
                return ckpt
        return None

    def _teacher(self):
        from edgekd.checkpoint import build_model

        cfg = self.cfg
        done = self._done("teacher")
        if done is not None:
            return _with_input_stats(build_model(done), done, self.data), done["metrics"]
        if cfg.teacher.checkpoint:
            return self._load_teacher(cfg.teacher.checkpoint)
        result = self._train("teacher", cfg.teacher, "ce", None)
        from edgekd.checkpoint import load_model

        model, _ = load_model(self.out_dir / "teacher.pt")
        return model, result

    def _load_teacher(self, path: str):
        """A given teacher checkpoint: checked against the data, evaluated, copied into the run."""
        from edgekd.checkpoint import build_model, check_compatible, load_checkpoint, load_weights, model_payload, save_checkpoint
        from edgekd.models import create_model

        data_info = self.data.describe()
        ckpt = load_checkpoint(path)
        if ckpt["format"] == "state_dict":  # weights from elsewhere: the configured arch, this data's input
            t = self.cfg.teacher
            c, size = self.data.in_channels, self.data.image_size
            model = create_model(t.arch, self.data.num_classes, c, size, **t.kwargs)
            load_weights(model, ckpt["state_dict"], path)
            ckpt = model_payload(model, t.arch, t.kwargs, data_info, "teacher")
        else:
            check_compatible(ckpt, data_info, path)
            model = build_model(ckpt, path)
        model = _with_input_stats(model, ckpt, self.data)
        result = self._score(model, ckpt["arch"])
        ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "edgekd_version", "train_state")}
        ckpt.update(role="teacher", metrics=result, complete=True, source=str(path))
        save_checkpoint(self.out_dir / "teacher.pt", ckpt)
        log(f"teacher: loaded {path} ({ckpt['arch']}), val {result['val_acc']:.4f}")
        return model.eval(), result

    def _score(self, model, arch: str) -> dict[str, Any]:
        from edgekd.data.loader import Batches
        from edgekd.train.evaluate import evaluate
        from edgekd.models import count_macs, count_params

        d, bs = self.data, self.cfg.data.eval_batch_size
        model.to(self.device)
        v = evaluate(model, Batches(d.val, d.mean, d.std, bs, self.device), self.amp)
        t = evaluate(model, Batches(d.test, d.mean, d.std, bs, self.device), self.amp)
        return {
            "arch": arch,
            "params": count_params(model),
            "macs": count_macs(model, (1, d.in_channels, *d.image_size)),
            "val_acc": round(v.acc, 6),
            "test_acc": round(t.acc, 6),
            "epochs": 0,
            "wall_s": 0.0,
            "checkpoint": "teacher.pt",
        }

    def _train(self, name: str, recipe: StageConfig, method_name: str, teacher) -> dict[str, Any]:
        import torch

        from edgekd.train.methods import build_method
        from edgekd.train.trainer import Stage, train_stage
        from edgekd.models import create_model

        done = self._done(name)
        if done is not None:
            return done["metrics"]
        cfg, d = self.cfg, self.data
        method = build_method(method_name, cfg.distill, recipe)
        torch.manual_seed(cfg.seed)  # student and baseline start from identical weights
        model = create_model(recipe.arch, d.num_classes, d.in_channels, d.image_size, **recipe.kwargs)
        if recipe.checkpoint and name != "teacher":
            from edgekd.checkpoint import check_compatible, load_checkpoint, load_weights

            init = load_checkpoint(recipe.checkpoint)
            if init["format"] != "state_dict":
                check_compatible(init, d.describe(), recipe.checkpoint)
            load_weights(model, init["state_dict"], recipe.checkpoint)
        extra = {"method": method_name}
        if method.needs_teacher:
            extra["distill"] = {"temperature": cfg.distill.temperature, "alpha": cfg.distill.alpha}
        stage = Stage(
            name=name,
            arch=recipe.arch,
            kwargs=dict(recipe.kwargs),
            recipe=recipe,
            method=method,
            teacher=teacher if method.needs_teacher else None,
            batch_size=cfg.data.batch_size,
            eval_batch_size=cfg.data.eval_batch_size,
            extra=extra,
        )
        log(f"{name}: {recipe.arch} with {method_name} for {recipe.epochs} epochs")
        return train_stage(
            stage, model, d, self.out_dir, self.device, self.amp, cfg.seed, cfg.distill.select, self.resume, self.on_epoch
        )


def _with_input_stats(model, ckpt: dict[str, Any], data):
    """Feed a teacher the normalization it was trained with, when it differs from the data's.

    Batches arrive normalized with the data's statistics; a teacher trained elsewhere (another
    dataset, domain adaptation) expects its own, so its input is re-normalized on the way in.
    """
    import torch
    from torch import nn

    own_mean, own_std = ckpt["data"]["mean"], ckpt["data"]["std"]
    if list(own_mean) == list(data.mean) and list(own_std) == list(data.std):
        return model

    class Renormalize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = len(own_mean)
            self.register_buffer("scale", (torch.tensor(data.std) / torch.tensor(own_std)).view(1, c, 1, 1))
            self.register_buffer("shift", ((torch.tensor(data.mean) - torch.tensor(own_mean)) / torch.tensor(own_std)).view(1, c, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale + self.shift  # (x·σ_d + μ_d − μ_t) / σ_t

    if len(own_mean) != data.in_channels:
        raise CheckpointError(f"teacher normalization has {len(own_mean)} channels, the data {data.in_channels}")
    log("teacher: re-normalizing inputs to the statistics it was trained with")
    return nn.Sequential(Renormalize(), model).eval()


def print_summary(summary: dict[str, Any]) -> None:
    rows = []
    for name in ("teacher", "student", "baseline"):
        r = summary.get(name)
        if r:
            rows.append([name, r["arch"], r["params"], r["macs"], _pct(r["val_acc"]), _pct(r["test_acc"]), r["epochs"], round(r["wall_s"], 1)])
    for link in summary.get("links", []):
        rows.append([link["name"], link["arch"], link["params"], link["macs"], _pct(link["val_acc"]), _pct(link["test_acc"]), link["epochs"], round(link["wall_s"], 1)])
    print_table("distill summary", ["model", "arch", "params", "MACs", "val acc %", "test acc %", "epochs", "wall s"], rows)
    if "baseline" in summary:
        gain = 100 * (summary["student"]["test_acc"] - summary["baseline"]["test_acc"])
        print(f"KD gain over the no-KD baseline on test: {gain:+.2f} points")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"
