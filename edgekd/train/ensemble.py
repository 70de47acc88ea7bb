"""Multi-teacher KD: several teachers, one soft target (the mean of their softened distributions).

Members are loaded (``distill.ensemble.teacher_checkpoints``) or trained here with the teacher's recipe,
one per entry of ``distill.ensemble.teachers`` (archs) and/or ``distill.ensemble.teacher_seeds``; they are stages
``teacher1``, ``teacher2``… (``teacher1.pt``…). ``teacher.kwargs`` go to members of
``teacher.arch`` only (they describe that arch). The ensemble itself is reported as the
``teacher`` record (parameters and MACs summed, accuracy of the averaged probabilities); it is
never saved as one file: it is only ever a soft-target source.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekd.train.flows import FLOWS


def member_specs(cfg) -> list[dict[str, Any]]:
    """One dict per member: name, and either checkpoint or (arch, kwargs, seed)."""
    d, t = cfg.distill.ensemble, cfg.teacher
    if d.teacher_checkpoints:
        return [{"name": f"teacher{i}", "checkpoint": path} for i, path in enumerate(d.teacher_checkpoints, 1)]
    n = max(len(d.teachers), len(d.teacher_seeds))
    archs = list(d.teachers) or [t.arch] * n
    seeds = list(d.teacher_seeds) or [cfg.seed + i for i in range(n)]
    return [
        {"name": f"teacher{i}", "arch": arch, "kwargs": dict(t.kwargs) if arch == t.arch else {}, "seed": seed}
        for i, (arch, seed) in enumerate(zip(archs, seeds), 1)
    ]


def train_members(run) -> tuple[list[Any], list[dict[str, Any]]]:
    """(frozen member models, their records with name and seed), trained or loaded."""
    models, records = [], []
    for spec in member_specs(run.cfg):
        if "checkpoint" in spec:
            recipe = dataclasses.replace(run.cfg.teacher, checkpoint=spec["checkpoint"], epochs=0)
            model, rec = run.teacher(name=spec["name"], recipe=recipe)
            rec = {"name": spec["name"], **rec, "source": spec["checkpoint"]}
        else:
            recipe = dataclasses.replace(run.cfg.teacher, arch=spec["arch"], kwargs=spec["kwargs"], checkpoint=None)
            model, rec = run.teacher(name=spec["name"], recipe=recipe, seed=spec["seed"])
            rec = {"name": spec["name"], **rec, "seed": spec["seed"]}
        models.append(model)
        records.append(rec)
    return models, records


def ensemble_name(archs: list[str]) -> str:
    """``ensemble(3×resnet20)``, ``ensemble(resnet20+plain10)``: short enough for a table cell."""
    counts = {a: archs.count(a) for a in dict.fromkeys(archs)}
    return "ensemble(" + "+".join(f"{n}×{a}" if n > 1 else a for a, n in counts.items()) + ")"


def ensemble_record(run, models: list[Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    from edgekd.train.teachers import EnsembleTeacher

    val_acc, test_acc = run.accuracy(EnsembleTeacher(models, temperature=1.0))  # plain probability averaging
    return {
        "arch": ensemble_name([r["arch"] for r in records]),
        "params": sum(r["params"] for r in records),
        "macs": sum(r["macs"] for r in records),
        "val_acc": val_acc,
        "test_acc": test_acc,
        "epochs": max(r["epochs"] for r in records),
        "wall_s": round(sum(r["wall_s"] for r in records), 2),
        "members": [r["name"] for r in records],
    }


@FLOWS.register("ensemble")
def ensemble_flow(run) -> dict[str, Any]:
    from edgekd.train.teachers import EnsembleTeacher

    cfg = run.cfg
    models, records = train_members(run)
    summary: dict[str, Any] = {"teachers": records, "teacher": ensemble_record(run, models, records)}
    kd_teacher = EnsembleTeacher(models, temperature=cfg.distill.temperature)  # softmax(out/T) = mean of softmax(z_i/T)
    summary["student"] = run.train("student", cfg.student, cfg.distill.method, kd_teacher)
    if cfg.distill.baseline:
        summary["baseline"] = run.baseline()
    return summary
