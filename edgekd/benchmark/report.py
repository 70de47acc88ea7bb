"""The bench report: rows → student-vs-teacher ratios, the terminal table, ``bench.json`` and
``bench.md``. Standard library only (the table printer is imported where it is used).

A row's ``accuracy_frac`` is the bundle task's metric: top-1 accuracy, or mean IoU for segmentation;
``settings["metric"]``/``settings["metric_short"]`` name it for the headers and prose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgekd.benchmark.row import SCHEMA, BenchRow

# the headline comparison: what ships to the device against the model it replaces, both in the
# same runtime (TFLite) so that the ratio is the model's doing, not the runtime's
HEADLINE = ("tflite_int8", "tflite_fp32")


def latency_unit(results: Sequence[dict[str, Any]]) -> tuple[str, float]:
    """(unit, factor from µs) for the tables: µs when even the fastest model is under 0.1 ms,
    so that tiny models do not read as 0.00194 ms, else ms. The JSON is always in µs (``*_us``)."""
    p50s = [r["p50_us"] for r in results if r.get("p50_us") is not None]
    return ("µs", 1.0) if p50s and min(p50s) < 100 else ("ms", 1e-3)


def metric_short(settings: dict[str, Any]) -> str:
    """The accuracy column's name: "acc", or "mIoU" for a segmentation bundle."""
    return settings.get("metric_short") or "acc"


def metric_word(settings: dict[str, Any]) -> str:
    """The metric in a sentence: "accuracy", or "mIoU"."""
    short = metric_short(settings)
    return "accuracy" if short == "acc" else short


def columns(unit: str, threads: bool = False, metric: str = "acc") -> list[str]:
    """``threads``: a column for the thread count, when the rows were measured at several.
    ``metric``: what the accuracy column holds (:func:`metric_short`)."""
    cols = [
        "model",
        "format",
        "status",
        f"p50 {unit}",
        f"p90 {unit}",
        f"mean ± std {unit}",
        "inf/s",
        f"{metric} %",
        "size KB",
        "peak RSS MB",
        "MACs",
        "GMAC/s",
    ]
    return [*cols[:3], "threads", *cols[3:]] if threads else cols


def several_thread_counts(results: Sequence[dict[str, Any]]) -> bool:
    return len({r.get("threads") for r in results}) > 1


def row_name(row: dict[str, Any]) -> str:
    return f"{row['model']}/{row['format']}"


def threads_text(settings: dict[str, Any]) -> str:
    counts = settings.get("thread_counts") or [settings["threads"]]
    return f"{' and '.join(map(str, counts))} thread{'s' if counts != [1] else ''}"


@dataclass
class BenchReport:
    """What ``edgekd.bench`` measured. ``results``: one :class:`BenchRow` per model file and thread
    count (rows loaded back from a ``bench.json`` are plain dicts of the same fields)."""

    host: dict[str, Any]
    results: list[BenchRow]
    settings: dict[str, Any]  # device, threads, runs, warmup, eval set, accuracy floor
    bundle: dict[str, Any]  # path, run name, creation time
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # json / markdown / plot → path written
    notes: list[str] = field(default_factory=list)  # e.g. why the plot was skipped, throttling, emulation

    @property
    def budget_failures(self) -> list[str]:
        """MCU rows that do not fit the flash/RAM budget (empty without one)."""
        out = []
        for r in self.results:
            budget = (r.get("tflm") or {}).get("budget")
            if budget and not budget["fits"]:
                out.append(f"{r['file']} {budget['message']}")
        return out

    @property
    def gate_failures(self) -> list[str]:
        """Rows that fail the accuracy floor (empty without one): below it, or failed to load/run.
        Skipped rows (runtime not installed here) are not gated: they measured nothing."""
        floor = self.settings.get("min_accuracy")
        if floor is None:
            return []
        out = []
        for r in self.results:
            if r["status"] == "failed":
                out.append(f"{row_name(r)} failed ({r.get('stage')})")
            elif r.get("below_floor"):
                out.append(f"{row_name(r)} {100 * r['accuracy_frac']:.2f} %")
        return out

    @property
    def failed_rows(self) -> list[dict[str, Any]]:
        """Rows that did not run, which make the bench exit 1; a row the target cannot run
        (``unsupported``: an op TFLite Micro lacks, a model over the MCU budget, a format the device
        does not take that was asked for by name) is excused by ``allow_unsupported``."""
        excuse = bool(self.settings.get("allow_unsupported"))
        return [r for r in self.results if r["status"] == "failed" and not (excuse and r.get("unsupported"))]

    @property
    def failures(self) -> list[str]:
        """One entry per failed row and per row below the accuracy floor, naming it and why."""
        out = []
        for r in self.failed_rows:
            threads = f" {r['threads']}t" if several_thread_counts(self.results) else ""
            out.append(f"{row_name(r)}{threads} failed ({r.get('stage')}): {str(r.get('reason'))[:200]}")
        floor = self.settings.get("min_accuracy")
        for r in self.results:
            if r.get("below_floor"):
                out.append(
                    f"{row_name(r)} {100 * r['accuracy_frac']:.2f} % is below the accuracy floor {100 * floor:.2f} %"
                )
        return out

    @property
    def passed(self) -> bool:
        """Every requested row ran (failures excused by ``allow_unsupported`` aside) and none is
        below the accuracy floor."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        gate = None
        if self.settings.get("min_accuracy") is not None or self.budget_failures or self.failed_rows:
            gate = {"min_accuracy": self.settings.get("min_accuracy"), "passed": self.passed, "failures": self.failures}
        return {
            "schema": SCHEMA,
            "host": self.host,
            "results": [r.to_dict() if isinstance(r, BenchRow) else r for r in self.results],
            "comparisons": self.comparisons,
            "settings": self.settings,
            "bundle": self.bundle,
            "gate": gate,
            "notes": self.notes,
        }


def compare(student: dict[str, Any], teacher: dict[str, Any], headline: bool = False) -> dict[str, Any]:
    """Ratios of an ok student row against an ok teacher row."""
    s_lat, t_lat = student["p50_us"], teacher["p50_us"]
    return {
        "student": student["format"],
        "teacher": teacher["format"],
        "speedup": t_lat / s_lat if s_lat > 0 else None,  # teacher p50 / student p50
        "size_reduction": teacher["size_bytes"] / student["size_bytes"] if student["size_bytes"] else None,
        "macs_reduction": teacher["macs"] / student["macs"] if student.get("macs") and teacher.get("macs") else None,
        "accuracy_delta_frac": student["accuracy_frac"] - teacher["accuracy_frac"],  # negative: the student loses
        "headline": headline,
        "threads": student.get("threads"),
    }


def _timed(row: dict[str, Any]) -> bool:
    """An ok row with a measured latency (not an MCU estimate, not an emulated Pi's run time)."""
    return row["status"] == "ok" and row.get("p50_us") is not None


def comparisons(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline pair (student int8 vs teacher fp32, TFLite) first, then like-for-like formats;
    at each thread count measured, and only between rows with a measured latency and accuracy."""
    timed = [r for r in results if _timed(r) and r.get("accuracy_frac") is not None]
    out = []
    for threads in dict.fromkeys(r.get("threads") for r in timed):
        ok = {(r["model"], r["format"]): r for r in timed if r.get("threads") == threads}
        s_fmt, t_fmt = HEADLINE
        if ("student", s_fmt) in ok and ("teacher", t_fmt) in ok:
            out.append(compare(ok["student", s_fmt], ok["teacher", t_fmt], headline=True))
        for (model, fmt), row in ok.items():
            if model == "student" and ("teacher", fmt) in ok:
                out.append(compare(row, ok["teacher", fmt]))
    return out


def parity_notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """One note per file whose export parity check failed (the bench measured it all the same)."""
    seen, out = set(), []
    for r in results:
        if r.get("parity_ok") is False and r["file"] not in seen:
            seen.add(r["file"])
            why = "; ".join(r.get("parity_problems") or []) or "out of bounds"
            out.append(
                f"PARITY FAILED: {r['file']} was out of its export parity bounds vs PyTorch ({why}): its rows measure "
                "a model that disagrees with the trained one"
            )
    return out


def _set(row: Any, key: str, value: Any) -> None:
    """Set a field on a bench row (a BenchRow, or its JSON dict)."""
    if isinstance(row, dict):
        row[key] = value
    else:
        setattr(row, key, value)


def int8_slower_notes(results: list[dict[str, Any]], files: dict[str, Any] | None = None) -> list[str]:
    """Flag (``int8_slower`` on the row) and explain each TFLite int8 row slower at p50 than the
    same model's fp32 file at the same thread count: int8 is meant to be faster, and when it is
    not, some ops of the model run outside the accelerated int8 kernels (XNNPACK). Those ops are
    named where the runtime can say (``int8_unaccelerated_ops`` on the row)."""
    timed = {(r["model"], r["format"], r.get("threads")): r for r in results if _timed(r)}
    out = []
    for (model, fmt, threads), row in timed.items():
        fp32 = timed.get((model, "tflite_fp32", threads))
        if fmt != "tflite_int8" or fp32 is None or row["p50_us"] <= fp32["p50_us"]:
            continue
        _set(row, "int8_slower", True)
        ops = None
        path = (files or {}).get(row["file"])
        if path is not None:
            try:
                from edgekd.runtimes.tflite_runner import undelegated_ops

                ops = undelegated_ops(path, threads or 1)
            except Exception:  # noqa: BLE001 - the flag stands without the op list
                ops = None
        _set(row, "int8_unaccelerated_ops", ops)
        where = (
            f"ops the runtime does not accelerate in int8: {', '.join(ops)}"
            if ops
            else (
                "every op is delegated, so the int8 kernels themselves are slower here"
                if ops == []
                else "the runtime did not say which ops"
            )
        )
        out.append(
            f"INT8 SLOWER: {model} tflite_int8 p50 {row['p50_us'] / 1e3:.4g} ms > "
            f"tflite_fp32 {fp32['p50_us'] / 1e3:.4g} ms "
            f"at {threads} thread(s); {where}"
        )
    return out


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ok rows that no other row beats on both latency (p50, lower) and accuracy (higher), fastest first."""
    timed = (r for r in rows if _timed(r) and r.get("accuracy_frac") is not None)
    ok = sorted(timed, key=lambda r: (r["p50_us"], -r["accuracy_frac"]))
    front, best = [], float("-inf")
    for r in ok:
        if r["accuracy_frac"] > best:
            front.append(r)
            best = r["accuracy_frac"]
    return front


def _num(v: float | None) -> str:
    """3 significant digits without exponents for 0.001…99,999."""
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def status_text(row: dict[str, Any]) -> str:
    status = row["status"]
    if status == "ok":
        text = "BELOW FLOOR" if row.get("below_floor") else "ok"
        if row.get("parity_ok") is False:
            text += " PARITY FAILED"  # the export found this file out of its bounds vs PyTorch
        if row.get("int8_slower"):
            text += " INT8 SLOWER"  # than the same model's fp32 file on this runtime
        return text + (" ~noisy" if row.get("noisy") else "")
    if status == "failed":
        return f"FAILED ({row.get('stage', '?')})"
    return status


def table_rows(results: Sequence[dict[str, Any]], scale: float = 1.0, threads: bool = False) -> list[list[str]]:
    """Formatted cells of :func:`columns`; latencies multiplied by ``scale`` (see :func:`latency_unit`)."""
    rows = []
    for r in results:
        lat = {k: r[f"{k}_us"] * scale for k in ("p50", "p90", "mean", "std") if r.get(f"{k}_us") is not None}
        rows.append(
            [
                r["model"],
                r["format"],
                status_text(r),
                *([str(r.get("threads"))] if threads else []),
                _num(lat.get("p50")),
                _num(lat.get("p90")),
                f"{_num(lat['mean'])} ± {_num(lat['std'])}" if "mean" in lat and "std" in lat else "—",
                _num(r.get("throughput_per_s")),
                f"{100 * r['accuracy_frac']:.2f}" if r.get("accuracy_frac") is not None else "—",
                f"{r['size_bytes'] / 1024:,.1f}" if r.get("size_bytes") is not None else "—",
                f"{r['peak_rss_bytes'] / 2**20:.0f}" if r.get("peak_rss_bytes") is not None else "—",
                f"{r['macs']:,}" if r.get("macs") is not None else "—",
                _num(r.get("gmacs_per_s")),
            ]
        )
    return rows


def comparison_rows(comps: Sequence[dict[str, Any]]) -> list[list[str]]:
    def times(v: float | None) -> str:
        return "—" if v is None else f"{_num(v)}×"

    several = len({c.get("threads") for c in comps}) > 1
    return [
        [
            f"student {c['student']} vs teacher {c['teacher']}"
            + (f" at {c['threads']} thread(s)" if several else "")
            + (" (headline)" if c["headline"] else ""),
            times(c["speedup"]),
            times(c["size_reduction"]),
            times(c["macs_reduction"]),
            f"{100 * c['accuracy_delta_frac']:+.2f}",
        ]
        for c in comps
    ]


COMPARISON_COLUMNS = ["student vs teacher", "speed-up (p50)", "smaller (file)", "fewer MACs", "Δ acc (points)"]


def comparison_columns(metric: str = "acc") -> list[str]:
    return [*COMPARISON_COLUMNS[:-1], f"Δ {metric} (points)"]


def reasons(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per row that did not run, naming why."""
    return [
        f"{row_name(r)} {r['status']}" + (f" ({r['stage']})" if r.get("stage") else "") + f": {r['reason']}"
        for r in results
        if r["status"] != "ok"
    ]


def accuracy_text(settings: dict[str, Any]) -> str:
    if settings.get("eval") is None:
        return "no accuracy: a lone model without eval data"
    return f"{settings.get('metric') or 'accuracy'} on {settings['eval']} ({settings['eval_count']} images)"


def title(report: BenchReport) -> str:
    s = report.settings
    return (
        f"bench {report.bundle.get('run') or report.bundle['path']} on {s['device']} ({report.host.get('cpu', '?')}, "
        f"{threads_text(s)}, "
        f"{s['runs']} timed runs after {s['warmup']} warm-up; {accuracy_text(s)})"
    )


def plot_title(report: BenchReport) -> str:
    s = report.settings
    return (
        f"{report.bundle.get('run') or report.bundle['path']} on {s['device']}: {report.host.get('cpu', '?')}, "
        f"{threads_text(s)}\n"
        f"{s['runs']} timed runs after {s['warmup']} warm-up, batch 1"
    )


MCU_COLUMNS = [
    "model",
    "format",
    "status",
    "TFLM ops",
    "arena KB",
    "flash KB (model + runtime)",
    "acc % (TFLM)",
    "budget",
]


def mcu_columns(metric: str = "acc") -> list[str]:
    return [*MCU_COLUMNS[:6], f"{metric} % (TFLM)", MCU_COLUMNS[7]]


def mcu_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        t = r.get("tflm")
        if t is None:
            continue
        budget = t.get("budget")
        rows.append(
            [
                r["model"],
                r["format"],
                status_text(r),
                "all supported" if t.get("ops_supported") else "UNSUPPORTED",
                f"{t['arena_bytes'] / 1024:,.1f}" if t.get("arena_bytes") is not None else "—",
                f"{t['flash_bytes'] / 1024:,.1f} ({t['model_bytes'] / 1024:,.1f} + "
                f"≈{t['runtime_flash_bytes'] / 1024:,.0f})"
                if t.get("flash_bytes")
                else "—",
                f"{100 * t['accuracy_frac']:.2f}" if t.get("accuracy_frac") is not None else "—",
                ("fits" if budget["fits"] else "DOES NOT FIT") if budget else "—",
            ]
        )
    return rows


EMULATED_COLUMNS = [
    "model",
    "core (QEMU board)",
    "flash KB (map)",
    "RAM KB (map)",
    "instructions / inference",
    "≈ cycles (TFLM + CMSIS-NN)",
    "top ops (instruction share)",
    "outputs vs host",
]


def emulated_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """``--emulate``: the app built with TFLM + CMSIS-NN and run on the core's QEMU board."""
    rows = []
    for r in results:
        e = (r.get("tflm") or {}).get("emulated")
        if not e:
            continue
        emu = e.get("emulated") or {}
        top = ", ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in (emu.get("per_op") or [])[:3])
        verdict = (
            "bit-exact"
            if e.get("bit_exact")
            else ("DIFFER" if e.get("problems") else f"FAILED: {e.get('reason') or '?'}")
        )
        rows.append(
            [
                r["model"],
                f"{e.get('core', '?')} ({e.get('board', '?')})",
                f"{e['flash_bytes'] / 1024:,.1f}" if e.get("flash_bytes") else "—",
                f"{e['ram_bytes'] / 1024:,.1f}" if e.get("ram_bytes") else "—",
                f"{emu['instructions']:,}" if emu.get("instructions") else "—",
                f"{e['est_cycles']:,}" if e.get("est_cycles") else "—",
                top or "—",
                verdict,
            ]
        )
    return rows


def estimate_rows(results: Sequence[dict[str, Any]], chosen: str | None) -> tuple[list[str], list[list[str]]]:
    """One row per MCU profile, one column per int8 model: estimated ms."""
    models = [r for r in results if (r.get("tflm") or {}).get("est_latency_us")]
    if not models:
        return [], []
    names = list(models[0]["tflm"]["est_latency_us"])
    head = ["MCU profile (estimate, ms)", *[r["file"] for r in models]]
    rows = [
        [
            name + (" ←" if chosen and name == chosen else ""),
            *[_num(r["tflm"]["est_latency_us"][name] / 1e3) for r in models],
        ]
        for name in names
    ]
    return head, rows


def legend(report: BenchReport) -> list[str]:
    from edgekd.benchmark.stats import NOISY_CV, NOISY_SPREAD

    lines = []
    if any(_timed(r) for r in report.results):  # nothing timed (MCU estimates): nothing to explain
        lines += [
            "latency: one image (batch 1), model invoke only (no pre/post-processing), monotonic clock; "
            "inf/s = 1 / mean; GMAC/s = MACs / p50",
            f"~noisy: (p90 − p50)/p50 > {NOISY_SPREAD:.0%} or std/mean > {NOISY_CV:.0%}: other load disturbed the "
            "timing; rerun on a quiet machine",
        ]
    if any(r.get("peak_rss_bytes") for r in report.results):
        lines.append(
            "peak RSS: high-water resident memory of a fresh process running only that model "
            "(interpreter + runtime + model + eval data; base_rss_bytes in the JSON is the process before the "
            "runtime loaded)"
        )
    if report.settings.get("min_accuracy") is not None:
        lines.append(
            f"floor: {report.settings.get('metric') or 'accuracy'} ≥ {100 * report.settings['min_accuracy']:.2f} %; "
            "BELOW FLOOR and FAILED rows fail the gate"
        )
    return lines


def headline_text(report: BenchReport) -> str | None:
    for c in report.comparisons:
        if c["headline"]:
            return (
                f"student {c['student']} vs teacher {c['teacher']}: {_num(c['speedup'])}× faster (p50), "
                f"{_num(c['size_reduction'])}× smaller, "
                f"{100 * c['accuracy_delta_frac']:+.2f} {metric_word(report.settings)} points"
            )
    return None


def print_report(report: BenchReport) -> None:
    """The results and ratio tables on stdout, reasons and legend under them."""
    from edgekd.ui import print_table

    unit, scale = latency_unit(report.results)
    several = several_thread_counts(report.results)
    print_table(
        title(report), columns(unit, several, metric_short(report.settings)), table_rows(report.results, scale, several)
    )
    if mcu_rows(report.results):
        print_table(
            "TFLite Micro (on this host) and MCU budget",
            mcu_columns(metric_short(report.settings)),
            mcu_rows(report.results),
        )
        head, rows = estimate_rows(report.results, report.host.get("mcu_profile"))
        if rows:
            print_table("MCU latency ESTIMATES (not measured)", head, rows)
        if emulated_rows(report.results):
            print_table(
                "MCU app on QEMU (TFLite Micro + CMSIS-NN; instructions counted, cycles estimated)",
                EMULATED_COLUMNS,
                emulated_rows(report.results),
            )
    for line in report.budget_failures:
        print(f"  {line}")
    for line in reasons(report.results):
        print(f"  {line}")
    if report.comparisons:
        print_table(
            "student vs teacher", comparison_columns(metric_short(report.settings)), comparison_rows(report.comparisons)
        )
    headline = headline_text(report)
    if headline:
        print(headline)
    for line in legend(report) + report.notes:
        print(f"  {line}")


def _conditions_md(host: dict[str, Any]) -> list[str]:
    """Board, clocks, temperature and throttling before/after (the rpi target)."""
    cond = host.get("conditions")
    if not cond:
        return []
    from edgekd.ui import markdown_table

    def cells(when: str, c: dict[str, Any]) -> list[Any]:
        temp = f"{c['temp_c']:.1f}" if c.get("temp_c") is not None else "n/a"
        return [
            when,
            temp,
            c.get("freq_mhz") or "n/a",
            c.get("governor") or "n/a",
            c.get("throttled") or "n/a",
            ", ".join(c.get("throttled_flags") or []) or "none",
            c.get("source"),
        ]

    return [
        f"Board: {host.get('board') or 'n/a'}" + (f" — EMULATED ({host['emulated']})" if host.get("emulated") else ""),
        "",
        markdown_table(
            ["", "SoC °C", "CPU MHz", "governor", "get_throttled", "flags", "read from"],
            [cells("before", cond["before"]), cells("after", cond["after"] or {})],
        ),
        "",
    ]


def markdown(report: BenchReport, plot_name: str | None) -> str:
    """``bench.md``: settings, host, results, ratios, the plot and how to read them."""
    from edgekd.ui import markdown_table

    h, s, b = report.host, report.settings, report.bundle
    unit, scale = latency_unit(report.results)
    several = several_thread_counts(report.results)
    packages = ", ".join(f"{k} {v}" for k, v in h.get("packages", {}).items())
    out = [
        f"# edgekd bench: {b.get('run') or b['path']} on {s['device']}",
        "",
        f"Bundle `{b['path']}` (run {b.get('run')}, exported {b.get('created')}), verified against its manifest.  ",
        f"{s['runs']} timed runs after {s['warmup']} warm-up, {threads_text(s)}, batch 1; {accuracy_text(s)}.",
        "",
        "## Host",
        "",
        markdown_table(
            ["cpu", "cores (usable)", "governor", "memory MB", "load avg", "os", "python", "runtimes"],
            [
                [
                    h.get("cpu"),
                    f"{h.get('cores')} ({h.get('usable_cores')})",
                    h.get("governor") or "n/a",
                    h.get("memory_mb"),
                    " / ".join(map(str, h.get("load_avg") or [])) or "n/a",
                    h.get("os"),
                    h.get("python"),
                    packages,
                ]
            ],
        ),
        "",
        *_conditions_md(h),
        "## Results",
        "",
        markdown_table(columns(unit, several, metric_short(s)), table_rows(report.results, scale, several)),
        "",
    ]
    if mcu_rows(report.results):
        out += [
            "## TFLite Micro and MCU budget",
            "",
            markdown_table(mcu_columns(metric_short(s)), mcu_rows(report.results)),
            "",
        ]
        out += [f"- {line}" for line in report.budget_failures]
        head, rows = estimate_rows(report.results, h.get("mcu_profile"))
        if rows:
            out += ["", "### MCU latency estimates (not measurements)", "", markdown_table(head, rows), ""]
        if emulated_rows(report.results):
            out += [
                "",
                "### MCU app on QEMU (TFLite Micro + CMSIS-NN)",
                "",
                markdown_table(EMULATED_COLUMNS, emulated_rows(report.results)),
                "",
            ]
    out += [f"- {line}" for line in reasons(report.results)]
    if report.comparisons:
        out += [
            "",
            "## Student vs teacher",
            "",
            markdown_table(comparison_columns(metric_short(s)), comparison_rows(report.comparisons)),
        ]
        headline = headline_text(report)
        if headline:
            out += ["", f"**{headline}**"]
    out += ["", "## Accuracy vs latency", ""]
    if plot_name:
        out += [
            f"![accuracy vs latency]({plot_name})",
            "",
            "Each point is a model/format; the horizontal bar spans the fastest run to p90. Points on the "
            "dashed line (the Pareto front) are not beaten by any other on both latency and accuracy: up "
            "and to the left is better.",
        ]
    out += [*report.notes, "", "## How to read this", ""]
    out += [f"- {line}" for line in legend(report)]
    if report.settings.get("min_accuracy") is not None:
        out += [
            "",
            "Gate: "
            f"{'passed' if report.passed else 'FAILED: ' + ', '.join(report.gate_failures + report.budget_failures)}",
        ]
    return "\n".join(out) + "\n"
