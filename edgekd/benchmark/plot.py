"""Accuracy vs latency, one point per model/format, with the Pareto front: which deployments are
worth considering at all. matplotlib is optional (the Raspberry Pi side does not install it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import write_with
from edgekd.benchmark.report import pareto_front

COLORS = {"student": "tab:blue", "teacher": "tab:red", "baseline": "tab:gray"}
MARKERS = {
    "pytorch": "s",
    "onnx": "D",
    "tflite_fp32": "o",
    "tflite_int8": "^",
    "tflite_fp16": "v",
    "tflite_dynamic": "P",
}


def plot_pareto(
    results: Sequence[dict[str, Any]], path: str | Path, title: str, accuracy_label: str, metric: str = "top-1 accuracy"
) -> Path:
    """Write the PNG of the ok rows and return its path. Raises ImportError without matplotlib and
    ValueError when no row ran. ``metric``: what the rows' accuracy is (the y-axis label)."""
    # rows with no latency (an MCU estimate, an emulated run) or no accuracy (a lone model) have no point
    ok = [
        r for r in results if r["status"] == "ok" and r.get("p50_us") is not None and r.get("accuracy_frac") is not None
    ]
    if not ok:
        raise ValueError("no row has both a measured latency and an accuracy, nothing to plot")
    # the object API with the Agg canvas: no pyplot, so no global backend or figure state is touched
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in ok:
        lat, acc = {k: _ms(r, k) for k in ("min", "p50", "p90")}, 100 * r["accuracy_frac"]
        color = COLORS.get(r["model"], "black")
        # the bar spans fastest run … p90: where the typical run lies, without the rare stalls
        ax.errorbar(
            lat["p50"],
            acc,
            xerr=[[lat["p50"] - lat["min"]], [lat["p90"] - lat["p50"]]],
            fmt=MARKERS.get(r["format"], "o"),
            color=color,
            markersize=8,
            capsize=3,
            alpha=0.9,
            markerfacecolor="white" if r.get("noisy") else color,  # hollow: flagged noisy
        )
    front = pareto_front(ok)
    xs = [_ms(r, "p50") for r in front]
    ys = [100 * r["accuracy_frac"] for r in front]
    # "post" steps: the best accuracy to be had within a latency budget, rising at each front point
    (front_line,) = ax.step(
        xs, ys, where="post", linestyle="--", color="black", linewidth=1, alpha=0.6, label="Pareto front"
    )
    ax.set_xscale("log")
    lo, hi = min(_ms(r, "min") for r in ok), max(_ms(r, "p90") for r in ok)
    ax.set_xlim(lo / 1.6, hi * 2.5)  # room for the labels right of the slowest point
    accs = [100 * r["accuracy_frac"] for r in ok]
    pad = max(1.0, (max(accs) - min(accs)) * 0.15)
    ax.set_ylim(min(accs) - pad, min(100.5, max(accs) + pad))
    _label_points(ax, fig, ok)
    ax.set_xlabel("latency per image, p50 in ms (log scale); bar: fastest run … p90")
    ax.set_ylabel(f"{metric}, % ({accuracy_label})")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles = [
        *[ax.scatter([], [], color=c, label=m) for m, c in COLORS.items() if any(r["model"] == m for r in ok)],
        *[
            ax.scatter([], [], marker=MARKERS[f], color="black", label=f)
            for f in MARKERS
            if any(r["format"] == f for r in ok)
        ],
        ax.scatter([], [], marker="o", facecolor="white", edgecolor="black", label="noisy (hollow)"),
    ]
    ax.legend(handles=[*handles, front_line], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    path = Path(path)
    write_with(path, lambda fh: fig.savefig(fh, format="png"))
    return path


def _ms(row: dict[str, Any], stat: str) -> float:
    """A latency field (``p50_us``, …) in ms, the plot's axis unit."""
    return row[f"{stat}_us"] / 1e3


def _label_points(ax: Any, fig: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Name each point; a label that would cover an earlier one moves up until it is clear
    (points of one model in several formats often sit almost on top of each other)."""
    fig.canvas.draw()  # fixes the data → pixel transform
    placed: list[tuple[float, float, float, float]] = []  # pixel boxes of the labels so far
    order = sorted(rows, key=lambda r: (100 * r["accuracy_frac"], r["p50_us"]))
    for r in order:
        x, y = _ms(r, "p50"), 100 * r["accuracy_frac"]
        px, py = ax.transData.transform((x, y))
        text = f"{r['model']}/{r['format']}" + (" ~" if r.get("noisy") else "")
        width, height = 6.0 * len(text), 11.0  # 8-pt label at 120 dpi, roughly
        dx, dy = 6.0, 5.0
        while any(
            px + dx < bx1 and bx0 < px + dx + width and py + dy < by1 and by0 < py + dy + height
            for bx0, by0, bx1, by1 in placed
        ):
            dy += height
        placed.append((px + dx, py + dy, px + dx + width, py + dy + height))
        ax.annotate(
            text, (x, y), textcoords="offset pixels", xytext=(dx, dy), fontsize=8, color=COLORS.get(r["model"], "black")
        )
