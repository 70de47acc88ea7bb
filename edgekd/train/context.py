"""The run context that flows, sweeps and methods work with: a run's config, folder, data and
device, the stage helpers (:mod:`edgekd.train.teacher_stage`, :mod:`edgekd.train.student_stage`)
and the summary it writes. Public: a new flow or method receives one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json
from edgekd.config import Config, to_dict
from edgekd.train.run_folder import MetricsLog
from edgekd.train.student_stage import StudentStages
from edgekd.train.summary import log_data, near_chance_warnings, print_summary
from edgekd.train.teacher_stage import TeacherStages
from edgekd.ui import Timer, log


class RunContext(TeacherStages, StudentStages):
    """One run: its config, folder, data and device, and the stage helpers every flow composes.

    A flow (``edgekd.train.flows.FLOWS``, chosen by the method) calls :meth:`teacher`,
    :meth:`train`, :meth:`baseline`… in its own order and returns the summary's model records.
    Every trained model is a named stage (``<name>.pt``, ``<name>_last.pt``), so resuming skips
    finished stages and continues the interrupted one, whatever the flow.
    """

    def __init__(self, cfg: Config, out_dir: Path, resume: bool, on_epoch: Sequence[Any]) -> None:
        self.cfg, self.out_dir, self.resume = cfg, out_dir, resume
        self.metrics = MetricsLog(out_dir / "metrics.jsonl", keep_existing=resume)
        self.on_epoch = [self.metrics.update, *on_epoch]
        self.wall: dict[str, float] = {}  # stage name → training seconds (0 for loaded models)
        self.prepared: dict[str, Any] = {}  # inputs a flow's check read before training (source data, transfer set)

    def setup(self) -> None:
        from edgekd.data import load_dataset
        from edgekd.train.runtime import configure

        cfg = self.cfg
        self.rt = configure(cfg.runtime, cfg.seed)
        log(f"distill: run {self.out_dir} on {self.rt.describe()}")
        self.data = load_dataset(cfg.data, log=log)
        log_data(self.data)

    def execute(self) -> dict[str, Any]:
        """Run the flow (after :meth:`setup` and the preflight) and write the summary."""
        import torch

        from edgekd.train.flows import FLOWS
        from edgekd.train.methods import METHODS

        total = Timer()
        cfg = self.cfg
        method_cls = METHODS.get(cfg.distill.method)
        board = None
        if cfg.log.tensorboard and self.rt.world.main:
            from edgekd.train.tensorboard import TensorBoardLog

            board = TensorBoardLog(self.out_dir)
            self.on_epoch.append(board)
        try:
            summary: dict[str, Any] = FLOWS.get(method_cls.flow)(self)
        finally:
            if board is not None:
                board.close()
        warnings = near_chance_warnings(summary, self.data.num_classes, self.data.task)
        if warnings:
            summary["warnings"] = warnings
        self.wall["total"] = round(total.elapsed, 2)
        summary["wall_s"] = self.wall
        section = method_cls.config_section  # the method's own keys, laid out as in config.yaml
        summary["distill"] = {
            k: to_dict(getattr(cfg.distill, k))
            for k in ("method", "temperature", "alpha", *([section] if section else []))
        }
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

    def evaluate(self, model, data=None) -> dict[str, float]:
        """``{val_acc, test_acc}`` (+ ``val_iou, test_iou`` for segmentation) of ``model`` on ``data``,
        rounded like every record."""
        from edgekd.train.evaluate import evaluate
        from edgekd.train.runtime import for_models
        from edgekd.train.trainer import eval_batches, interleaved, prefixed

        d, bs = data or self.data, self.cfg.data.eval_batch_size
        model.to(self.device)
        rt = for_models(self.rt, [("model", model)], (1, d.in_channels, *d.image_size))
        v = evaluate(model, eval_batches(d.val, d, bs, rt), self.amp, d.task)
        t = evaluate(model, eval_batches(d.test, d, bs, rt), self.amp, d.task)
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
