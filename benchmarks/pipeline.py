#!/usr/bin/env python3
"""The whole pipeline on one config: distill → export → bench, then the bench report.

    python benchmarks/pipeline.py --config configs/digits.yaml --out runs/pipeline-digits --runs 200

Each stage is one library call with the CLI's argument names. OUT/run is the distill run,
OUT/bundle the exported bundle, OUT/bench the report (bench.md, bench.json, bench.png); bench.md is
printed at the end, ready for notes. Exits 1 when --min-accuracy is given and not met, 2 on an error.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default="configs/digits.yaml", metavar="FILE", help="distill config (default: configs/digits.yaml)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/pipeline-<config name>)")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="config override for distill (repeatable)"
    )
    parser.add_argument("--runs", type=int, default=100, metavar="N", help="timed runs per model (default 100)")
    parser.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed runs first (default 10)")
    parser.add_argument("--threads", type=int, metavar="N", help="runtime threads (default: every usable core)")
    parser.add_argument(
        "--min-accuracy", type=float, metavar="X", help="accuracy floor for every model/format (fraction)"
    )
    args = parser.parse_args(argv)
    from edgekd.limits import out_of_range

    # before the distill run: a bad bench setting would otherwise be found after the training
    problems = out_of_range(args, at_least={"runs": 1, "warmup": 0, "threads": 1}, fractions=("min_accuracy",))
    if problems:
        print(f"pipeline: error: {problems[0]}", file=sys.stderr)
        return 2

    import edgekd
    from edgekd.exporters.export import export

    out = Path(args.out) if args.out else Path("runs") / f"pipeline-{Path(args.config).stem}"
    try:
        edgekd.distill(config=args.config, out=out / "run", set=args.set, overwrite=True)
        export(run=out / "run", out=out / "bundle")
        report = edgekd.bench(
            artifacts=out / "bundle",
            out=out / "bench",
            runs=args.runs,
            warmup=args.warmup,
            threads=args.threads,
            min_accuracy=args.min_accuracy,
        )
    except edgekd.EdgekdError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(Path(report.outputs["markdown"]).read_text())
    if not report.passed:
        print(f"pipeline: {len(report.failures)} bench rows failed: {'; '.join(report.failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
