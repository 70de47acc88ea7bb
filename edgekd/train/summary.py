"""What a distill run reports: the data line, the summary table (per model, per TAKD link, per
domain) and the KD gain over the baseline."""

from __future__ import annotations

import math
from typing import Any

from edgekd.tasks import get_task
from edgekd.ui import log, print_table, warn


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


def near_chance(record: dict[str, Any], num_classes: int, task: str, split: str = "test") -> str | None:
    """How a classifier's accuracy on ``split`` sits near chance ("10.3 % (chance 10.0 %)"), or
    None. Near = less than a tenth of the way from chance (1/K) to 100 %: a model that learned
    nothing (an ImageNet BN momentum on a small set, labels in another order) lands there."""
    value = record.get(f"{split}_acc")
    if task != "classification" or value is None or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if value >= chance + 0.1 * (1.0 - chance):
        return None
    return f"{split} acc {100 * value:.1f} % (chance {100 * chance:.1f} % for {num_classes} classes)"


def weak_teacher(val_acc: float, num_classes: int, n_val: int) -> str | None:
    """How a loaded teacher's val accuracy sits near chance ("val acc 12.5 %: near chance (…)"), or None.

    This gate stops a run before KD, so it fires only where the teacher is not clearly better than
    guessing: val top-1 below chance + max(min(5 points, chance / 2), 3 binomial σ of guessing on
    ``n_val`` images). "1.5× chance, at most 5 points above it": 1.5× chance alone would stop a fair
    binary teacher at 70 %, chance + 5 points alone a 1000-class teacher at 50× chance. The 3σ term:
    on a small val split guessing scores a few points above chance by luck (digits: 144 val images,
    10 classes, σ = 2.5 points), which proves nothing. Below chance counts too (a swapped binary
    label order). Looser than :func:`near_chance`, the stage warning, because this one stops the run.
    Examples: 10 classes, 144 val images: < 17.5 %; 10 classes, 5,000: < 15 %; 2 classes, 1,000:
    < 55 %; 100 classes, 5,000: < 1.5 %.
    """
    if num_classes < 2 or n_val < 1:
        return None
    chance = 1.0 / num_classes
    bound = chance + max(min(0.05, 0.5 * chance), 3.0 * math.sqrt(chance * (1.0 - chance) / n_val))
    if val_acc >= bound:
        return None
    return (
        f"val acc {100 * val_acc:.1f} %: near chance ({100 * chance:.1f} % for {num_classes} classes; "
        f"under {100 * bound:.1f} % on {n_val} val images is not clearly better than guessing)"
    )


def near_chance_warnings(summary: dict[str, Any], num_classes: int, task: str) -> list[str]:
    """One line per model of the summary whose test accuracy is near chance; marks its record."""
    out = []
    records = [(m.get("name", "teacher"), m) for m in summary.get("teachers", [])]
    records += [
        (n, summary[n])
        for n in ("teacher_source", "teacher", "student", "baseline")
        if isinstance(summary.get(n), dict)
    ]
    records += [(r["name"], r) for r in summary.get("links", [])]
    for name, rec in records:
        weak = near_chance(rec, num_classes, task)
        if weak:
            rec["near_chance"] = True
            out.append(
                f"{name} ({rec.get('arch')}): {weak}: it learned next to nothing; check the lr, epochs, BN momentum "
                "and preprocessing"
            )
    return out


def _model_row(name: str, r: dict[str, Any], task: str = "classification") -> list[Any]:
    metrics = [_pct(r[key]) if key in r else "—" for key, _ in get_task(task).summary_columns]
    if r.get("near_chance"):
        name = f"{name} (NEAR CHANCE)"
    return [name, r["arch"], r["params"], r["macs"], *metrics, r["epochs"], round(r["wall_s"], 1)]


def print_summary(summary: dict[str, Any]) -> None:
    task = get_task(summary.get("task"))
    rows = [_model_row(m["name"], m) for m in summary.get("teachers", [])]  # ensemble members first
    for name in ("teacher_source", "teacher", "student", "student_qat", "baseline"):
        r = summary.get(name)
        if r:
            rows.append(_model_row(name, r, task.name))
    print_table("distill summary", model_columns(task.name), rows)
    for line in summary.get("warnings", []):
        warn(f"NEAR CHANCE: {line}")
    links = summary.get("links", [])
    if links:
        auto = any("chosen" in r for r in links)  # automatic TA choice: mark the kept candidate
        print_table(
            "TAKD links (teacher → student)",
            ["link", "teacher", *MODEL_COLUMNS[1:], *(["chosen"] if auto else [])],
            [
                [
                    r["name"],
                    r["teacher"],
                    *_model_row(r["name"], r)[1:],
                    *(["yes" if r.get("chosen") else ""] if auto else []),
                ]
                for r in links
            ],
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
