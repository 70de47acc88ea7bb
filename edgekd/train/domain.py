"""Domain adaptation: a teacher of the SOURCE domain teaches a student of the TARGET domain.

``source`` (a data section) is the teacher's domain, ``data`` the target: the student is selected
on target val and deployed there. Steps:

1. teacher trained on the source (or loaded from ``teacher.checkpoint``);
2. optionally fine-tuned on the labeled target training split (``distill.domain.finetune_epochs``): the
   stage ``teacher_ft``, fed target images normalized with the teacher's own statistics, so that
   its first step sees what the source teacher expects;
3. the student learns from target training images with the teacher's soft targets — their labels
   only with ``distill.domain.target_labels`` (else -1: soft term alone) — mixed, with
   ``distill.domain.source_labels``, with the labeled source training images;
4. the baseline: the same student on the same images with labels alone (no teacher);
5. every model is evaluated on both domains (``summary["domains"]``); the top-level records are
   on the target.

Source images are brought to the target's channels and size (any two ImageFolders work), and
classes are matched by index (their names should agree; a difference is logged).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekd.data.dataset import Split, concat
from edgekd.errors import DataError
from edgekd.train.flows import FLOWS
from edgekd.ui import log, warn


def load_source(cfg_source, target, log=log):
    """The source dataset, in the target's input shape, with the target's number of classes."""
    from edgekd.data import load_dataset
    from edgekd.data.imagefolder import match_shape
    from edgekd.data.split import channel_stats

    src = load_dataset(cfg_source, log=log)
    if src.num_classes != target.num_classes:
        raise DataError(
            f"source has {src.num_classes} classes and the target (data) {target.num_classes}: domain adaptation needs "
            "the same classes"
        )
    if src.classes != target.classes:
        warn(f"source and target class names differ ({src.classes[:3]}… vs {target.classes[:3]}…): matched by index")
    shape = tuple(target.train.images.shape[1:])
    if tuple(src.train.images.shape[1:]) != shape:
        log(
            f"source: converting {src.in_channels}x{src.image_size[0]}x{src.image_size[1]} images to the target's "
            f"{shape[0]}x{shape[1]}x{shape[2]}"
        )
        train, val, test = (match_shape(s, shape) for s in (src.train, src.val, src.test))
        mean, std = cfg_source.mean, cfg_source.std
        if mean is None or len(mean) != shape[0]:
            mean, std = channel_stats(train.images)
        src = dataclasses.replace(src, train=train, val=val, test=test, mean=tuple(mean), std=tuple(std))
    return src


def prepared_source(run):
    """The source dataset, read once: the run's preflight reads it (``domain_flow.check``), so
    that a wrong source fails before any training, and the flow reuses it."""
    if "source" not in run.prepared:
        run.prepared["source"] = load_source(run.cfg.source, run.data)
    return run.prepared["source"]


def unlabeled(split: Split) -> Split:
    return Split(split.images, np.full(len(split), -1, dtype=np.int64))


def source_teacher(run, source):
    """Step 1: the source-domain teacher (trained or loaded) and its record on the source."""
    return run.teacher(data=source)


@FLOWS.register("domain")
def domain_flow(run) -> dict[str, Any]:
    from edgekd.checkpoint import load_checkpoint

    cfg, target = run.cfg, run.data
    d = cfg.distill
    source = prepared_source(run)
    log(
        f"source: {source.name}{' (' + source.shift + ')' if source.shift != 'none' else ''}, train/val/test "
        f"{len(source.train)}/{len(source.val)}/{len(source.test)}"
    )
    summary: dict[str, Any] = {}
    stages = {"teacher": "teacher"}  # summary name → stage (file stem), in table order

    _, source_record = source_teacher(run, source)
    summary["teacher"] = {**source_record, "trained_on": "source"}
    if d.domain.finetune_epochs:
        own = load_checkpoint(run.out_dir / "teacher.pt")["data"]
        ft_data = dataclasses.replace(target, mean=tuple(own["mean"]), std=tuple(own["std"]))
        recipe = dataclasses.replace(
            cfg.teacher,
            epochs=d.domain.finetune_epochs,
            lr=d.domain.finetune_lr or cfg.teacher.lr / 10,
            warmup_epochs=0,
            checkpoint=None,
        )
        ft_record = run.train(
            "teacher_ft", recipe, run.task_method, None, data=ft_data, init=run.out_dir / "teacher.pt"
        )
        summary["teacher_source"] = summary["teacher"]
        summary["teacher"] = {**ft_record, "trained_on": "source, fine-tuned on target"}
        stages = {"teacher_source": "teacher", "teacher": "teacher_ft"}
    teacher = run.load(stages["teacher"], target)

    target_train = target.train if d.domain.target_labels else unlabeled(target.train)
    parts = [target_train, source.train] if d.domain.source_labels else [target_train]
    student_data = dataclasses.replace(target, train=concat(*parts))
    log(
        f"domain: student learns from {len(target.train)} target images "
        f"({'labeled' if d.domain.target_labels else 'soft targets only'})"
        + (f" + {len(source.train)} labeled source images" if d.domain.source_labels else "")
    )
    summary["student"] = run.train("student", cfg.student, d.method, teacher, data=student_data)
    stages["student"] = "student"
    if d.baseline:
        summary["baseline"] = run.baseline(data=student_data)
        stages["baseline"] = "baseline"

    # every model on both domains, each fed with its own normalization (run.load wraps as needed)
    accuracy: dict[str, dict[str, dict[str, float]]] = {"source": {}, "target": {}}
    for name, stage in stages.items():
        for domain, data in (("source", source), ("target", target)):
            val_acc, test_acc = run.accuracy(run.load(stage, data, quiet=True), data)
            accuracy[domain][name] = {"val_acc": val_acc, "test_acc": test_acc}
    summary["domains"] = {
        "source": {"dataset": source.name, "shift": source.shift, "accuracy": accuracy["source"]},
        "target": {"dataset": target.name, "shift": target.shift, "accuracy": accuracy["target"]},
    }
    # top-level records are on the target domain, like the student's and the baseline's
    for name in ("teacher_source", "teacher"):
        if name in summary:
            summary[name].update(accuracy["target"][name])
    return summary


domain_flow.check = prepared_source
