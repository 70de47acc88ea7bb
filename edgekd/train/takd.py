"""Teacher-assistant KD (Mirzadeh et al. 2020, arXiv 1902.03393): bridge a large capacity gap.

``ta_select: chain`` distills along ``teacher → assistants[0] → … → student``: every link is a
Hinton-KD run whose teacher is the previous link's (selected) model. ``ta_select: auto`` treats
``assistants`` as candidates: each is distilled from the teacher, and the student is distilled
from the one whose val accuracy is nearest the midpoint between the teacher's and the no-KD
student's (the paper's finding: the accuracy midpoint, not the size midpoint, makes the best TA).

Every link is a named stage (``ta1.pt``, ``ta2.pt``… then ``student.pt``), so an interrupted
chain resumes in the link where it stopped. Assistants use the student's recipe with their own
arch (``student.kwargs`` belong to the student's arch and are not passed on, nor
``student.mean``/``std``: they describe the student's weights; assistants learn with the data's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekd.train.flows import FLOWS
from edgekd.ui import log


def _link(name: str, teacher: str, record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "teacher": teacher, **record, **extra}


def pick_assistant(candidates: list[dict[str, Any]], teacher_val: float, student_val: float) -> tuple[int, float]:
    """(index of the candidate nearest the accuracy midpoint, the midpoint). Ties go to the
    smaller model, then to the earlier candidate. Val accuracy only: test never picks."""
    midpoint = (teacher_val + student_val) / 2
    best = min(
        range(len(candidates)), key=lambda i: (abs(candidates[i]["val_acc"] - midpoint), candidates[i]["params"], i)
    )
    return best, midpoint


@FLOWS.register("chain")
def chain_flow(run) -> dict[str, Any]:
    cfg = run.cfg
    d = cfg.distill
    summary: dict[str, Any] = {}
    teacher, summary["teacher"] = run.teacher()
    links: list[dict[str, Any]] = []

    def ta_recipe(arch: str):
        # trained from scratch here: the data's statistics (student.mean/std describe the student's weights)
        return dataclasses.replace(cfg.student, arch=arch, kwargs={}, checkpoint=None, mean=None, std=None)

    if d.takd.ta_select == "chain":
        prev_name, prev = "teacher", teacher
        for i, arch in enumerate(d.takd.assistants, 1):
            name = f"ta{i}"
            links.append(_link(name, prev_name, run.train(name, ta_recipe(arch), d.method, prev), role="assistant"))
            prev_name, prev = name, run.load(name)
        summary["student"] = run.train("student", cfg.student, d.method, prev)
        links.append(_link("student", prev_name, summary["student"], role="student"))
        if d.baseline:
            summary["baseline"] = run.baseline()
    else:
        # the midpoint needs the no-KD student's accuracy first (check() made sure baseline is on)
        summary["baseline"] = run.baseline()
        candidates = [
            run.train(f"ta{i}", ta_recipe(arch), d.method, teacher) for i, arch in enumerate(d.takd.assistants, 1)
        ]
        best, midpoint = pick_assistant(candidates, summary["teacher"]["val_acc"], summary["baseline"]["val_acc"])
        chosen = f"ta{best + 1}"
        log(
            f"takd: accuracy midpoint {midpoint:.4f} (teacher {summary['teacher']['val_acc']:.4f}, "
            f"no-KD student {summary['baseline']['val_acc']:.4f}); chosen {chosen} ({candidates[best]['arch']}, val "
            f"{candidates[best]['val_acc']:.4f})"
        )
        for i, rec in enumerate(candidates):
            links.append(_link(f"ta{i + 1}", "teacher", rec, role="candidate", chosen=i == best))
        summary["student"] = run.train("student", cfg.student, d.method, run.load(chosen))
        links.append(_link("student", chosen, summary["student"], role="student"))
        summary["ta_select"] = {
            "mode": "auto",
            "criterion": "val accuracy nearest the teacher / no-KD student midpoint",
            "midpoint_val_acc": round(midpoint, 6),
            "chosen": chosen,
            "chosen_arch": candidates[best]["arch"],
        }
    summary["links"] = links
    return summary
