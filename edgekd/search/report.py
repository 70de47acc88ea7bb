"""The search's outputs: every trial with its budget figures, and the Pareto front of val accuracy
against flash and latency, as ``pareto.json``, ``pareto.md`` and ``pareto.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.atomic import write_json, write_text
from edgekd.ui import log, markdown_table, print_table

FIGURE_KEYS = ("params", "macs", "model_kb", "flash_kb", "ram_kb", "latency_ms", "host_ms", "rpi_ms")


def trial_rows(study) -> list[dict[str, Any]]:
    """One record per trial (any state), in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "status": a.get("status"),  # trained | pruned | over_budget | duplicate | training (died) | None
                "candidate": a.get("candidate"),
                "candidate_key": a.get("candidate_key"),
                "val_acc": t.value if t.value is not None else None,
                "test_acc": a.get("test_acc"),
                "epochs_reported": len(t.intermediate_values),
                "figures": a.get("figures"),
                "violations": a.get("violations"),
                "worker": a.get("worker"),
                "run": a.get("run"),
                **({"retry_of": a["retry_of"]} if "retry_of" in a else {}),
                **({"duplicate_of": a["duplicate_of"]} if "duplicate_of" in a else {}),
            }
        )
    return rows


def shown_status(row: dict[str, Any]) -> str:
    """What a trial came to, for the counts and tables: a failed trial (its process died or raised)
    is "failed" whatever status it had reached, so a killed trial does not read as still training."""
    if row["state"] == "fail":
        return "failed"
    return row["status"] or row["state"]


def latency_key(budget) -> str:
    """The front's latency axis: the MCU estimate when a device is given, else the host
    measurement when asked for, else MACs (a proxy)."""
    if budget.device is not None:
        return "latency_ms"
    if budget.rpi_ms is not None:
        return "rpi_ms"
    if budget.host_ms is not None:
        return "host_ms"
    return "macs"


def pareto_front(points: list[dict[str, Any]], lat: str) -> list[dict[str, Any]]:
    """The points no other point beats on all of (val acc ↑, flash ↓, latency ↓) while being
    strictly better on one."""

    def key(p):
        f = p["figures"]
        return p["val_acc"], -(f.get("flash_kb") or 0.0), -(f.get(lat) or 0.0)

    def dominates(a, b) -> bool:
        ka, kb = key(a), key(b)
        return all(x >= y for x, y in zip(ka, kb)) and ka != kb

    return sorted(
        (p for p in points if not any(dominates(q, p) for q in points)),
        key=lambda p: p["figures"].get("flash_kb") or 0.0,
    )


def write_report(study, ctx, teacher_record: dict[str, Any], final: list[dict[str, Any]]) -> dict[str, Any]:
    rows = trial_rows(study)
    finals = {f["candidate_key"]: f for f in final}
    lat = latency_key(ctx.budget)
    points: dict[str, dict[str, Any]] = {}  # one per distinct trained candidate inside the budget
    for r in rows:
        if r["state"] == "complete" and r["status"] == "trained":
            k = r["candidate_key"]
            if k not in points or r["val_acc"] > points[k]["trial_val_acc"]:
                points[k] = {
                    "candidate_key": k,
                    "candidate": r["candidate"],
                    "trial": r["number"],
                    "trial_val_acc": r["val_acc"],
                    "figures": r["figures"],
                    "run": r["run"],
                }
    for k, p in points.items():
        f = finals.get(k)
        p["val_acc"] = f["val_acc"] if f else p["trial_val_acc"]  # the full recipe's when it ran
        p["recipe"] = "full" if f else "trial"
        if f:
            p["run"], p["test_acc"] = f["run"], f["test_acc"]
    front = pareto_front(list(points.values()), lat)
    best = next((f for f in final if f.get("best")), None)
    counts: dict[str, int] = {}
    for r in rows:
        counts[shown_status(r)] = counts.get(shown_status(r), 0) + 1
    failed = [
        r["number"] for r in rows if r["state"] == "fail" and not any(q.get("retry_of") == r["number"] for q in rows)
    ]
    result = {
        "selection": "highest val accuracy inside the budget (test is reported, never used to choose)",
        "budget": ctx.budget.to_dict(),
        "latency_axis": lat,
        "space": ctx.space.to_dict(),
        "trial_epochs": ctx.trial_epochs,
        "full_epochs": ctx.cfg.student.epochs,
        "teacher": teacher_record,
        "counts": counts,
        "failed_trials": failed,
        "trials": rows,
        "finalists": final,
        "front": front,
        "best": ({**best, "run": str(ctx.out / "best")} if best else None),
        "files": {"json": "pareto.json", "markdown": "pareto.md", "plot": "pareto.png"},
    }
    write_json(ctx.out / "pareto.json", result)
    write_text(ctx.out / "pareto.md", _markdown(result, lat))
    _plot(result, list(points.values()), lat, ctx.out / "pareto.png")
    _print(result, lat)
    log(f"search: wrote {ctx.out}/pareto.json, pareto.md, pareto.png")
    return result


def _fig(f: dict[str, Any] | None, key: str) -> Any:
    v = (f or {}).get(key)
    if v is None:
        return "—"
    if isinstance(v, float):  # kilobytes to 0.1 KB; sub-millisecond latencies keep 3 significant digits
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return v


def _markdown(result: dict[str, Any], lat: str) -> str:
    cols = ["trial", "candidate", "status", "val acc %", *FIGURE_KEYS, "why not trained"]
    rows = [
        [
            r["number"],
            r["candidate_key"] or "—",
            shown_status(r),
            "—" if r["val_acc"] is None else f"{100 * r['val_acc']:.2f}",
            *(_fig(r["figures"], k) for k in FIGURE_KEYS),
            "; ".join(r["violations"] or []),
        ]
        for r in result["trials"]
    ]
    front = [
        [
            p["candidate_key"],
            p["recipe"],
            f"{100 * p['val_acc']:.2f}",
            _fig(p["figures"], "flash_kb"),
            _fig(p["figures"], "ram_kb"),
            _fig(p["figures"], lat),
            p["run"],
        ]
        for p in result["front"]
    ]
    best = result["best"]
    lines = [
        "# edgekd search",
        "",
        f"Budget: `{_budget_text(result['budget'])}`; {result['trial_epochs']}-epoch trials, the best "
        f"{len(result['finalists'])} "
        f"retrained for {result['full_epochs']} epochs. Chosen on val accuracy.",
        "",
        f"Best: **{best['candidate_key']}**, val {100 * best['val_acc']:.2f} %, test {100 * best['test_acc']:.2f} % → "
        f"`{best['run']}`"
        if best
        else "Best: none (no trained candidate fits)",
        "",
        "## Pareto front (val accuracy vs flash and latency)",
        "",
        markdown_table(["candidate", "recipe", "val acc %", "flash KB", "RAM KB", lat, "run"], front),
        "",
        "## Every trial",
        "",
        markdown_table(cols, rows),
        "",
    ]
    return "\n".join(lines)


def _budget_text(b: dict[str, Any]) -> str:
    return (
        ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in b.items() if v is not None) or "none"
    )


def _print(result: dict[str, Any], lat: str) -> None:
    rows = [
        [
            p["candidate_key"],
            p["recipe"],
            f"{100 * p['val_acc']:.2f}",
            _fig(p["figures"], "params"),
            _fig(p["figures"], "flash_kb"),
            _fig(p["figures"], "ram_kb"),
            _fig(p["figures"], lat),
        ]
        for p in result["front"]
    ]
    print_table(
        "Pareto front (inside the budget)",
        ["candidate", "recipe", "val acc %", "params", "flash KB", "RAM KB", lat],
        rows,
    )
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result["counts"].items()))
    print(f"trials: {counts}")
    b = result["best"]
    if b:
        print(f"best: {b['candidate_key']}  val {100 * b['val_acc']:.2f}  test {100 * b['test_acc']:.2f}  → {b['run']}")


def _plot(result: dict[str, Any], points: list[dict[str, Any]], lat: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from edgekd.atomic import write_with

    front_keys = {p["candidate_key"] for p in result["front"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    budget = result["budget"]
    for ax, key, label in (
        (axes[0], "flash_kb", "flash KB (int8 model + TFLM runtime)"),
        (
            axes[1],
            lat,
            {
                "latency_ms": f"est. latency ms ({budget.get('device')})",
                "host_ms": "host latency ms (int8, 1 thread)",
                "rpi_ms": "Raspberry Pi ms (est.: host ms × Pi/host ratio)",
                "macs": "MACs",
            }[lat],
        ),
    ):
        xs = [(p["figures"] or {}).get(key) for p in points]
        pts = [(x, 100 * p["val_acc"], p) for x, p in zip(xs, points) if x is not None]
        ax.scatter(
            [x for x, _, p in pts if p["candidate_key"] not in front_keys],
            [y for _, y, p in pts if p["candidate_key"] not in front_keys],
            color="lightgray",
            label="trained, dominated",
        )
        fr = sorted((x, y) for x, y, p in pts if p["candidate_key"] in front_keys)
        if fr:
            ax.plot([x for x, _ in fr], [y for _, y in fr], marker="o", color="tab:blue", label="Pareto front")
        b = result["best"]
        if b:
            bf = next((p for p in points if p["candidate_key"] == b["candidate_key"]), None)
            if bf and (bf["figures"] or {}).get(key) is not None:
                ax.plot(
                    [bf["figures"][key]],
                    [100 * bf["val_acc"]],
                    marker="*",
                    markersize=14,
                    color="red",
                    linestyle="none",
                    label="best",
                )
        if budget.get(key) is not None:
            ax.axvline(budget[key], color="tab:red", linestyle=":", label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("val accuracy %")
        ax.legend(fontsize="small")
    fig.suptitle(f"edgekd search: budget {_budget_text(budget)}")
    fig.tight_layout()
    write_with(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)
