"""Flows: how a run is orchestrated around its KD loss. The method names its flow (``flow``).

A flow takes the run (:class:`edgekd.train.context.RunContext`: data, device and the stage helpers
``teacher``, ``train``, ``baseline``, ``load``…) and returns the summary's model records. Here:
``standard`` (teacher → student → baseline) and ``transfer`` (the same, the student also seeing
an unlabeled transfer set). Other methods' flows live in the modules beside them, listed as the
registry's providers below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekd.registry import Registry
from edgekd.ui import log

FLOWS: Registry = Registry(
    "distill flow",
    providers=[
        "edgekd.train.flows",
        "edgekd.train.fitnets",
        "edgekd.train.takd",
        "edgekd.train.ensemble",
        "edgekd.train.domain",
    ],
)


@FLOWS.register("standard")
def standard_flow(run) -> dict[str, Any]:
    """Teacher (trained or loaded) → KD student → no-KD baseline."""
    cfg = run.cfg
    summary: dict[str, Any] = {}
    teacher, summary["teacher"] = run.teacher()
    summary["student"] = run.train("student", cfg.student, cfg.distill.method, teacher)
    if cfg.distill.qat.epochs:
        from edgekd.train.qat import qat_stage

        summary["student_qat"] = qat_stage(run, teacher)
    if cfg.distill.baseline:
        summary["baseline"] = run.baseline()
    return summary


@FLOWS.register("transfer")
def transfer_flow(run) -> dict[str, Any]:
    """Standard, with the student's training split extended by unlabeled images (label -1).

    Shuffled together, every batch mixes labeled and unlabeled samples: the cross-entropy sees
    the labeled ones, the soft term all of them. The baseline trains on the labeled split alone:
    without a teacher, unlabeled images teach nothing.
    """
    from edgekd.data.dataset import concat

    cfg, data = run.cfg, run.data
    d = cfg.distill
    extra = transfer_set(run)
    train = concat(data.train, extra) if d.transfer.labeled else extra
    log(
        f"transfer: {len(extra)} unlabeled images from {d.transfer.set}"
        + (f" + {len(data.train)} labeled" if d.transfer.labeled else " alone")
    )
    summary: dict[str, Any] = {}
    teacher, summary["teacher"] = run.teacher()
    summary["student"] = run.train(
        "student", cfg.student, d.method, teacher, data=dataclasses.replace(data, train=train)
    )
    if d.qat.epochs:  # fine-tuned on the labeled split: the ranges are set on the data the model will see
        from edgekd.train.qat import qat_stage

        summary["student_qat"] = qat_stage(run, teacher)
    if d.baseline:
        summary["baseline"] = run.baseline()
    summary["transfer"] = {
        "root": d.transfer.set,
        "unlabeled": len(extra),
        "labeled": len(data.train) if d.transfer.labeled else 0,
    }
    return summary


def transfer_set(run):
    """The unlabeled transfer set, read once: the run's preflight reads it (``transfer_flow.check``),
    so that a wrong path fails before any training, and the flow reuses it."""
    from edgekd.data.unlabeled import load_unlabeled

    if "transfer_set" not in run.prepared:
        cfg, data = run.cfg, run.data
        run.prepared["transfer_set"] = load_unlabeled(
            cfg.distill.transfer.set, (data.in_channels, *data.image_size), cfg.data.cache_dir, log=log
        )
    return run.prepared["transfer_set"]


transfer_flow.check = transfer_set
