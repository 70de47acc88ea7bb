"""``edgekd bench``: every model file of a verified bundle measured on a target, then the table,
``bench.json``, ``bench.md`` and the accuracy-vs-latency plot.

Nothing heavy is imported here: the runtimes load in the measuring processes, matplotlib in the
plot, rich in the table printer, PyYAML and the data loaders only for ``full_test``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.atomic import write_json, write_text
from edgekd.benchmark.errors import BenchError
from edgekd.benchmark.report import (
    BenchReport,
    comparisons,
    int8_slower_notes,
    markdown,
    parity_notes,
    plot_title,
    print_report,
    status_text,
)
from edgekd.benchmark.row import BenchRow
from edgekd.benchmark.targets import TARGETS, BenchTarget, Job
from edgekd.bundle import bundle_file, require_verified
from edgekd.errors import ArgumentError, first_line
from edgekd.formats import format_for_file, format_rank, get_format, model_extensions
from edgekd.limits import check_number, check_runs, check_threads
from edgekd.outputs import check_output_file, check_report_dir, holds_json_keys
from edgekd.paths import as_path, input_file, is_under
from edgekd.registry import did_you_mean

if TYPE_CHECKING:
    from edgekd.tasks import Task

ROLE_ORDER = ("student", "student_qat", "teacher", "baseline")  # the QAT int8 file right after the PTQ one


def latest_bundle(root: str | Path = "artifacts") -> Path:
    """The most recently exported bundle under ``root``."""
    bundles = [p.parent for p in Path(root).glob("*/manifest.json")]
    if not bundles:
        raise BenchError(f"no bundle in {root}/ (make one with `edgekd export`, or pass --artifacts DIR)")
    return max(bundles, key=lambda p: (p / "manifest.json").stat().st_mtime)


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    """A filter given as "a,b" or ["a", "b"] (None: everything)."""
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ArgumentError(f'a model or format filter is "a,b" or ["a", "b"], got {value!r}')
    items = value.split(",") if isinstance(value, str) else [v for item in value for v in item.split(",")]
    return [v.strip() for v in items if v.strip()]


def _check_mcu_names(mcu: Any, emulate: Any) -> None:
    """``mcu`` (a profile) and ``emulate`` (a core) are names, as on the command line: an int or a
    list reached the registries' lookup as a raw TypeError ('int' object is not iterable)."""
    if mcu is None and emulate is None:
        return
    from edgekd.mcu.profiles import profile_names
    from edgekd.mcu.toolchain import BOARDS

    for argument, value, names in (("mcu", mcu, profile_names()), ("emulate", emulate, BOARDS.names())):
        if value is not None and not isinstance(value, str):
            raise ArgumentError(f"{argument} must be a name ({', '.join(names)}), got {value!r}")


def _check_filter(kind: str, wanted: list[str] | None, present: list[str]) -> None:
    for name in wanted or []:
        if name not in present:
            hint = did_you_mean(name, present)
            raise BenchError(f"unknown {kind} {name!r}{hint} in this bundle: {', '.join(present)}")


def _check_settings(runs: int, warmup: int, threads: int | None, min_accuracy: float | None) -> None:
    check_runs(runs, warmup, error=BenchError)
    check_threads("--threads", threads, error=BenchError)  # the target adds the local core count
    check_number(
        "--min-accuracy",
        min_accuracy,
        low=0.0,
        high=1.0,
        optional=True,
        why="a fraction between 0 and 1: 0.95 for 95 %",
        error=BenchError,
    )


def _check_eval(path: Path, task: Task, models: list[tuple[str, dict[str, Any]]]) -> None:
    """Read the eval data once before measuring: a corrupt, incomplete or malformed file (float or
    NaN images, images of another shape or count than the labels, masks or labels of NaN) is the
    user's input (one line, exit 2), not a failure of every row. The images' H×W×C is checked
    against the input shape the manifest records for each of ``models`` (file name, entry): images
    that fit none of them are refused here; a bundle whose models take different inputs runs the
    rows the images fit, and the others fail, named (worker.check_fits). What only the model file
    says (an input the manifest leaves out or leaves symbolic) and what depends on the model's
    classes (labels in range) is each row's check too."""
    from edgekd.benchmark.worker import hwc_mismatch, input_hwc, load_eval
    from edgekd.tasks import TaskError

    images, targets = load_eval(path, task.targets_key)
    try:
        task.check_images(images, targets)
        task.check_targets(images, targets)
    except TaskError as exc:
        raise BenchError(f"eval data {path.name} is malformed: {exc} (re-export the bundle)") from None
    inputs = [(name, e.get("input") or {}) for name, e in models]
    wrong = [hwc_mismatch(images, input_hwc(spec), name, spec) for name, spec in inputs]
    if models and all(wrong):
        raise BenchError(f"eval data {path.name} does not match the model input: {wrong[0]} (re-export the bundle)")


def plan(
    manifest: dict[str, Any], models: list[str] | None = None, formats: list[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(file name, manifest entry) of every model file to measure: students first, then by format."""
    entries = manifest.get("models", {})
    _check_filter("model", models, sorted({e["role"] for e in entries.values()}))
    _check_filter("format", formats, sorted({e["format"] for e in entries.values()}))

    def order(item: tuple[str, dict[str, Any]]) -> tuple[int, int, str]:
        role, fmt = item[1]["role"], item[1]["format"]
        rank = ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)
        return rank, format_rank(fmt), item[0]

    chosen = [
        (name, e)
        for name, e in entries.items()
        if (models is None or e["role"] in models) and (formats is None or e["format"] in formats)
    ]
    if not chosen:
        raise BenchError("nothing to bench: no model file matches --models/--formats")
    return sorted(chosen, key=order)


def _full_test_split(bundle: Path, manifest: dict[str, Any], folder: Path) -> tuple[Path, int]:
    """The run's whole test split, written as an eval.npz-style file for the measuring processes."""
    try:
        import numpy as np

        from edgekd.config import load_saved_config
        from edgekd.data import load_dataset
        from edgekd.ui import log

        data = load_dataset(load_saved_config(bundle_file(bundle, manifest, "config.yaml")).data, log=log)
    except ImportError as exc:
        raise BenchError(
            f"--full-test loads the run's dataset, which needs {exc.name or 'the train extra'} here "
            "(pip install 'edgekd[train]'); without --full-test the bench uses the bundle's eval.npz"
        ) from None
    if list(data.classes) != list(manifest.get("labels", [])):
        raise BenchError(
            f"--full-test: the dataset's classes {list(data.classes)[:5]}… differ from the bundle's labels "
            f"{manifest.get('labels', [])[:5]}…"
        )
    from edgekd.tasks import get_task

    path = folder / "test.npz"
    targets = get_task(data.task).eval_targets(data.test, np.arange(len(data.test)))  # labels, or masks
    np.savez(path, images=np.ascontiguousarray(data.test.images.transpose(0, 2, 3, 1)), **targets)
    return path, len(data.test)


def _empty_row(name: str, entry: dict[str, Any], manifest: dict[str, Any], threads: int) -> BenchRow:
    """A row with what the bundle says; measured values stay None unless the model runs."""
    role = entry["role"]
    parity = manifest.get("metrics", {}).get(name, {})
    return BenchRow(
        model=role,
        format=entry["format"],
        file=name,
        threads=threads,
        size_bytes=manifest["files"][name]["bytes"],
        macs=manifest.get("roles", {}).get(role, {}).get("macs"),
        parity_ok=parity.get("ok"),  # the export's own check
        # why that check failed: an out-of-bounds file is shown so, never as a plain "ok"
        parity_problems=list(parity.get("problems") or []) or None,
    )


def _check_onnx_file(path: Path) -> None:
    """A lone ``.onnx`` that does not parse is bad input (one line), not a failed row. Where the
    ``onnx`` package is missing (a Raspberry Pi) the runtime's own load names the problem."""
    try:
        import onnx
    except ImportError:
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends, whatever the version
        raise BenchError(f"{path.name} is not a readable ONNX model ({first_line(exc, 120)})") from None
    if not model.graph.input:  # an empty file parses as an empty message
        raise BenchError(f"{path.name} is not an ONNX model (it holds no graph inputs)")


def lone_model(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest-like dict) for one model file outside a bundle: no eval data, so no accuracy."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"--model {path} is a folder; give one model file (a bundle folder is --artifacts)")
    input_file(path, "--model", BenchError)  # missing, or a device or FIFO that a read never ends
    fmt = format_for_file(path.name)
    if fmt is None:
        raise BenchError(f"{path.name} is not a model file ({', '.join(model_extensions())})")
    fmt_name, macs = fmt.name, None
    if fmt.runtime == "litert":
        from edgekd.tflite_file import read_tflite

        model = read_tflite(path)  # the format from the file itself, not its name (resnet8_quant.tflite)
        kind = "tflite_int8" if model.is_int8 else "tflite_int16x8" if model.input_dtype == "int16" else "tflite_fp32"
        fmt_name, macs = kind, model.total_macs
    elif fmt.runtime == "torch":  # the row could only fail: nothing says what input to time it with
        raise BenchError(
            f"{path.name}: a lone PyTorch checkpoint has no fixed input shape to time it with; bench its bundle "
            "(--artifacts) or its .onnx/.tflite file"
        )
    elif fmt.runtime == "onnxruntime":
        _check_onnx_file(path)
    stem = path.stem
    manifest = {
        "files": {path.name: {"bytes": path.stat().st_size}},
        "models": {path.name: {"role": stem, "format": fmt_name}},
        "roles": {stem: {"macs": macs}},
        "eval": None,
    }
    return path.parent, manifest


def _target(device: str, threads: int | None, options: dict[str, Any]) -> BenchTarget:
    if not isinstance(device, str):
        raise ArgumentError(f"device must be a name ({', '.join(TARGETS.names())}), got {device!r}")
    cls = TARGETS.get(device)
    given = {k: v for k, v in options.items() if v is not None and v is not False}  # 0 is given (and refused later)
    for key in given:
        if key not in cls.options:
            flag = "--" + key.replace("_", "-")
            takers = [n for n in TARGETS.names() if key in TARGETS.get(n).options]
            raise BenchError(f"{flag} does not apply to --device {device} (it is for --device {' / '.join(takers)})")
    return cls(threads=threads, **given)


def bench(
    artifacts: str | Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    json: str | Path | None = None,  # same name as the CLI's --json
    min_accuracy: float | None = None,
    out: str | Path | None = None,
    full_test: bool = False,
    models: str | Sequence[str] | None = None,
    formats: str | Sequence[str] | None = None,
    model: str | Path | None = None,
    force: bool = False,
    mcu: str | None = None,
    flash_kb: float | None = None,
    ram_kb: float | None = None,
    allow_unsupported: bool = False,
    emulate: str | None = None,
) -> BenchReport:
    """Benchmark every model file of a bundle on ``device``; returns the report.

    ``artifacts``: bundle folder (default: the newest under ``artifacts/``), verified by sha256
    first. ``threads``: the runtimes' thread count (default: the target's, for cpu every usable
    core, for rpi 1 and 4). ``runs`` timed ``invoke`` calls follow ``warmup`` untimed ones. Writes
    ``bench.json``, ``bench.md`` and ``bench.png`` to ``out`` (default: ``<bundle>/bench``, which
    ``edgekd verify`` ignores) and, with ``json``, the same JSON to that file. ``min_accuracy`` (a
    fraction) gates: ``report.passed`` is False when a row is below it or failed. ``full_test``
    measures accuracy on the run's whole test split (needs the dataset and the train extra) instead
    of ``eval.npz``. ``models``/``formats`` restrict the rows ("student", "tflite_int8,tflite_fp32").
    ``model``: one model file instead of a bundle (no accuracy; report in ``bench/<stem>``).
    ``force`` (rpi): run the Pi path on a machine that is not a Pi. ``mcu`` (mcu): an MCU profile
    (``cortex-m7-216mhz``, or a core name) whose flash/RAM are the budget; ``flash_kb``/``ram_kb``
    set or override it. A row whose model does not run fails (``report.passed`` is False, the CLI
    exits 1); so does a model the target cannot run (an op TFLite Micro lacks, over the MCU budget,
    a format asked for by name that the device does not take), unless ``allow_unsupported``.
    Rows of formats the device does not take that were not asked for by name are skipped.
    The output folder (and ``json``) is checked before anything is measured. ``emulate`` (mcu): a
    Cortex-M core (``cortex-m4``): build each int8 model's app with TFLite Micro + CMSIS-NN, run it
    on the core's QEMU board, count instructions per op and fail the row if any int8 output differs
    from the host TFLM interpreter's.
    """
    from edgekd.ui import log

    _check_settings(runs, warmup, threads, min_accuracy)
    wanted_models, wanted_formats = _names(models), _names(formats)  # argument kinds before any disk
    _check_mcu_names(mcu, emulate)
    artifacts, model = as_path(artifacts, "artifacts", optional=True), as_path(model, "model", optional=True)
    out, json = as_path(out, "out", optional=True), as_path(json, "json", optional=True)
    if model is not None and (artifacts is not None or full_test):
        raise BenchError("--model benches one model file: leave out --artifacts and --full-test")
    target = _target(
        device, threads, {"force": force, "mcu": mcu, "flash_kb": flash_kb, "ram_kb": ram_kb, "emulate": emulate}
    )
    if model is not None:
        bundle, manifest = lone_model(model)
        default_out = Path("bench") / model.stem
    else:
        bundle = Path(artifacts) if artifacts is not None else latest_bundle()
        manifest = require_verified(bundle)
        default_out = bundle / "bench" / target.report_folder()  # bench/cpu, bench/rpi-<host>, bench/mcu
    todo = plan(manifest, wanted_models, wanted_formats)
    from edgekd.tasks import get_task

    task = get_task(manifest.get("task"))  # what eval.npz holds and what "accuracy" means
    # where the report goes is checked before minutes of measuring: an existing file, a read-only
    # place, or a link planted in the bundle (the default BUNDLE/bench) is refused now
    out_dir = Path(out) if out is not None else default_out
    check_report_dir(
        out_dir, "--out", "bench report", inside=bundle if model is None and is_under(out_dir, bundle) else None
    )
    if json is not None:  # never the model measured, the bundle's manifest or a user's file
        check_output_file(
            json,
            "--json",
            "bench JSON",
            own=holds_json_keys("schema", "results"),
            inside=bundle if model is None else None,  # a lone model's folder is the user's: own() guards it
            except_under=bundle / "bench",
        )
    named = set(wanted_formats or []) | (
        {manifest["models"][next(iter(manifest["models"]))]["format"]} if model is not None else set()
    )
    num_classes = len(manifest.get("labels") or []) or None
    counts = target.thread_counts()
    host = target.host()  # before the runs: the load average then is what the runs competed with
    before = target.conditions()
    threads_text = " and ".join(map(str, counts))
    log(
        f"bench: {bundle if model is None else model} on {device} ({len(todo)} model files, {threads_text} thread(s), "
        f"{warmup} warm-up + {runs} timed runs each)"
    )
    results = []
    # every name from the manifest is resolved inside the bundle (read_manifest refused any other)
    files = {
        name: (bundle_file(bundle, manifest, name) if model is None else bundle / name).resolve() for name, _ in todo
    }
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        if full_test:
            eval_path, eval_count = _full_test_split(bundle, manifest, Path(tmp))
            eval_name = "the full test split"
        elif manifest.get("eval"):
            eval_path, eval_count = (
                bundle_file(bundle, manifest, manifest["eval"]["file"]),
                manifest["eval"].get("count"),
            )
            eval_name = manifest["eval"]["file"]
            _check_eval(eval_path, task, todo)
        else:
            eval_path, eval_count, eval_name = None, None, None
        for name, entry in todo:
            skip = target.unsupported(entry["format"])
            for threads_now in counts[:1] if skip else counts:
                row = _empty_row(name, entry, manifest, threads_now)
                if skip and entry["format"] in named:  # asked for by name: the device cannot do it, a failure
                    row.update({"status": "failed", "stage": "unsupported", "reason": skip, "unsupported": True})
                elif skip:
                    row.update({"status": "skipped", "reason": skip})
                else:
                    classes = num_classes or int(entry.get("output", {}).get("shape", [0])[-1])
                    eval_file = str(Path(eval_path).resolve()) if eval_path is not None else None
                    fmt = get_format(entry["format"])  # known: unsupported() skipped the others
                    job = Job(
                        entry["role"],
                        entry["format"],
                        str(files[name]),
                        eval_file,
                        classes,
                        threads_now,
                        runs,
                        warmup,
                        entry.get("input", {}),
                        task.name,
                        fmt.runner,
                        fmt.io_dtype if model is None else None,
                    )
                    row.update(target.measure(job))
                if row.status == "ok":
                    if row.macs and row.p50_us and row.p50_us > 0:
                        row.gmacs_per_s = row.macs / (row.p50_us / 1e6) / 1e9
                    if min_accuracy is not None and row.accuracy_frac is not None:
                        row.below_floor = row.accuracy_frac < min_accuracy
                results.append(row)
                log(_progress_line(row, task.metric_short))
        after = target.conditions()
        if model is not None and not allow_unsupported and results and all(r.unsupported for r in results):
            # one file the target cannot take (over the budget, an op without a kernel, a format it
            # does not run) is bad input, as a misspelled name is, not a failed row among others
            raise BenchError(f"{model.name} on {target.name}: {results[0].reason}")
        if before is not None:
            host["conditions"] = {"before": before, "after": after}
        settings = {
            "device": device,
            "threads": target.threads,
            "thread_counts": list(counts),
            "runs": runs,
            "warmup": warmup,
            "eval": eval_name,
            "eval_count": eval_count,
            "min_accuracy": min_accuracy,
            "task": task.name,
            "metric": task.metric_label,  # what every row's "accuracy_frac" holds
            "metric_short": task.metric_short,
            "full_test": full_test,
            "models": wanted_models,
            "formats": wanted_formats,
            "model": str(model) if model is not None else None,
            "force": force,
            "mcu": mcu,
            "flash_kb": getattr(target, "flash_kb", None),
            "ram_kb": getattr(target, "ram_kb", None),
            "allow_unsupported": allow_unsupported,
        }
        bundle_info = {
            "path": str(bundle if model is None else model),
            "run": manifest.get("run", {}).get("name"),
            "created": manifest.get("created"),
        }
        report = BenchReport(host, results, settings, bundle_info, comparisons(results))
        report.notes.extend(target.warnings(host, before, after))
        report.notes.extend(parity_notes(results))
        report.notes.extend(int8_slower_notes(results, files))
        out_dir.mkdir(parents=True, exist_ok=True)
        report.outputs.update(
            target.artifacts(out_dir, results, files, Path(eval_path) if eval_path is not None else None, task.name)
        )
    _write_outputs(report, out_dir, json)
    print_report(report)
    log(f"bench: wrote {', '.join(report.outputs.values())}")
    return report


def _progress_line(row: dict[str, Any], metric: str = "acc") -> str:
    head = f"bench  {row['model']:<8} {row['format']:<14} {row['threads']}t {status_text(row):<12}"
    if row["status"] != "ok":
        return f"{head} {row['reason']}"
    parts = []
    if row.get("p50_us") is not None:
        parts.append(f"p50 {row['p50_us'] / 1e3:.4g} ms")
    if row.get("emulated"):
        parts.append(f"emulated run time (not a latency) {row['emulated']['p50_us'] / 1e3:.4g} ms")
    if row.get("accuracy_frac") is not None:
        parts.append(f"{metric} {100 * row['accuracy_frac']:.2f} %")
    if row.get("peak_rss_bytes"):
        parts.append(f"peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MB")
    tflm = row.get("tflm") or {}
    if tflm.get("arena_bytes") is not None:
        parts.append(f"arena {tflm['arena_bytes'] / 1024:.1f} KB  flash ≈{tflm['flash_bytes'] / 1024:.0f} KB")
    return f"{head} {'  '.join(parts)}"


def _write_outputs(report: BenchReport, out_dir: Path, json_path: str | Path | None) -> None:
    from edgekd.benchmark.plot import plot_pareto

    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "bench.png"
    try:
        accuracy_label = f"{report.settings['eval']}, {report.settings['eval_count']} images"
        plot = plot_pareto(
            report.results, png, plot_title(report), accuracy_label, report.settings.get("metric") or "top-1 accuracy"
        )
        report.outputs["plot"] = str(plot)
    except ImportError:
        report.notes.append("plot skipped: matplotlib is not installed (pip install matplotlib)")
    except ValueError as exc:
        report.notes.append(f"plot skipped: {exc}")
    if "plot" not in report.outputs:
        png.unlink(missing_ok=True)  # an older run's plot would not match this report
    write_text(out_dir / "bench.md", markdown(report, png.name if "plot" in report.outputs else None))
    report.outputs["markdown"] = str(out_dir / "bench.md")
    write_json(out_dir / "bench.json", report.to_dict())
    report.outputs["json"] = str(out_dir / "bench.json")
    if json_path is not None:
        write_json(json_path, report.to_dict())
        report.outputs["json_copy"] = str(json_path)
