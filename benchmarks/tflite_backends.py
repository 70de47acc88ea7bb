"""Compare the TFLite backends (onnx2tf, litert_torch) on one distill run's student.

Each backend converts the same student with the same calibration images; every file is checked
against PyTorch on the whole test split and timed with ai-edge-litert (1 thread, ``interpreter.invoke``
alone, median of --runs after --warmup). A backend that this interpreter lacks is converted by the
one given with --python (litert-torch and TensorFlow need not share an environment)::

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/tflite_backends.py --run /tmp/runs/digits \\
        --out /tmp/lt-bench/digits --python /tmp/ltvenv/bin/python --json /tmp/lt-bench/digits.json

Prints one table and, with --json, writes the rows with host info and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from edgekd.cli import OneLineParser
from edgekd.errors import EdgekdError
from edgekd.exporters.compare import BACKEND_MODULES, DEFAULT_FORMATS, compare_tflite_backends
from edgekd.outputs import check_report_json, report_json
from edgekd.ui import print_table


def check_args(args: argparse.Namespace) -> None:
    """Every input before the first conversion: a bad one would otherwise fail each backend's row alike."""
    from edgekd.exporters.export import run_config, run_summary
    from edgekd.formats import FORMATS
    from edgekd.limits import out_of_range
    from edgekd.paths import is_under
    from edgekd.registry import unknown_name_message

    for backend in args.backends.split(","):
        if backend not in BACKEND_MODULES:
            raise EdgekdError(unknown_name_message("TFLite backend", backend, BACKEND_MODULES))
    tflite_formats = [name for name in FORMATS.names() if name.startswith("tflite_")]
    for fmt in args.formats.split(","):
        if fmt not in tflite_formats:
            raise EdgekdError(unknown_name_message("TFLite format", fmt, tflite_formats))
    problems = out_of_range(args, at_least={"runs": 1, "warmup": 0})
    if problems:
        raise EdgekdError(problems[0])
    check_report_json(args.json, "tflite_backends")
    run = Path(args.run)
    run_summary(run)  # a folder that is no finished run, a damaged summary or config: one line each
    run_config(run)
    if is_under(os.path.realpath(args.out), os.path.realpath(run)):  # --run is read only: a bundle per backend in it
        raise EdgekdError(
            f"--out {args.out} is inside --run {args.run}, which is read only: choose a folder outside it"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise EdgekdError(f"--out {args.out} is a file, not a folder")
    if args.python and shutil.which(args.python) is None:
        raise EdgekdError(f"--python {args.python}: no such interpreter")


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="finished distill run folder (read only)")
    p.add_argument("--out", required=True, help="folder for one bundle per backend")
    p.add_argument("--backends", default="onnx2tf,litert_torch", help="comma-separated (default: %(default)s)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="comma-separated (default: %(default)s)")
    p.add_argument("--python", help="interpreter for the backends this one lacks")
    p.add_argument("--runs", type=int, default=200, help="timed invokes per file (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=50, help="untimed invokes per file first (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="write the full results here")
    args = p.parse_args()
    try:
        check_args(args)
        report = compare_tflite_backends(
            args.run,
            args.out,
            backends=args.backends.split(","),
            formats=args.formats.split(","),
            python=args.python,
            runs=args.runs,
            warmup=args.warmup,
        )
    except EdgekdError as exc:  # a bad name, count or run folder: one line, before any backend converts
        print(f"tflite_backends: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", None) or 2
    rows = []
    for r in report["results"]:
        if r["error"]:
            rows.append([r["backend"], "—", "", "", "", "", "", "", "", r["error"]])
    for row in report["rows"]:
        lat = row.get("latency", {})
        io = f"{row['input_dtype']}→{row['output_dtype']}"
        if row["full_integer_problems"] is not None:  # int8 rows: is it really full integer?
            io += (
                ", full integer"
                if not row["full_integer_problems"]
                else ", NOT full integer: " + "; ".join(row["full_integer_problems"])
            )
        rows.append(
            [
                row["backend"],
                row["format"],
                row["bytes"],
                f"{100 * row['top1_agreement']:.2f}",
                f"{row['max_abs_diff']:.3g}",
                f"{100 * row['test_acc']:.2f}",
                f"{lat['median_ms'] * 1000:.1f}" if lat.get("median_ms") is not None else lat.get("error", "—"),
                f"{row['conversion_s']:.1f}",
                io,
                " ".join(row["ops"]),
            ]
        )
    ref = next((r["reference_acc"] for r in report["results"] if not r["error"]), None)
    host = report["host"]
    title = (
        f"TFLite backends on {report['run']} (PyTorch test acc {100 * ref:.2f} %; {host['runtime']}, 1 thread, "
        f"median of {report['latency']['runs']} invokes; {host['cpu_count']} CPUs, load {host['load_avg_1m']})"
        if ref is not None
        else f"TFLite backends on {report['run']}"
    )
    print_table(
        title,
        [
            "backend",
            "format",
            "bytes",
            "top-1 agree %",
            "max |Δlogit|",
            "test acc %",
            "median µs",
            "convert s",
            "I/O",
            "ops",
        ],
        rows,
    )
    if args.json:
        from edgekd.atomic import write_json

        # Paths etc. as strings, then strict
        write_json(args.json, report_json("tflite_backends", json.loads(json.dumps(report, default=str))))
    return 0 if all(not r["error"] for r in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
