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

from edgekd.exporters.compare import DEFAULT_FORMATS, compare_tflite_backends
from edgekd.ui import print_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="finished distill run folder (read only)")
    p.add_argument("--out", required=True, help="folder for one bundle per backend")
    p.add_argument("--backends", default="onnx2tf,litert_torch", help="comma-separated (default: %(default)s)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="comma-separated (default: %(default)s)")
    p.add_argument("--python", help="interpreter for the backends this one lacks")
    p.add_argument("--runs", type=int, default=200, help="timed invokes per file (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=50, help="untimed invokes per file first (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="write the full results here")
    args = p.parse_args()

    report = compare_tflite_backends(
        args.run,
        args.out,
        backends=args.backends.split(","),
        formats=args.formats.split(","),
        python=args.python,
        runs=args.runs,
        warmup=args.warmup,
    )
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

        write_json(args.json, json.loads(json.dumps(report, default=str)))  # Paths etc. as strings, then strict
    return 0 if all(not r["error"] for r in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
