"""`edgekd search` timed end to end, then every model on its Pareto front exported and checked
against the budget by `edgekd bench --device mcu`.

    python benchmarks/search.py                                   # digits, 12 trials, ≤ 64 KB flash on a Cortex-M4
    python benchmarks/search.py --config configs/cifar10-cpu.yaml --budget flash_kb=100,device=cortex-m4-120mhz \
        --trials 8 --out runs/search-cifar10                      # the MLPerf Tiny budget

Prints the search's wall time against the limit, and per front model: flash and arena as the
search measured them before training, as the MCU bench measured the trained model, and whether it
fits. Exits 1 when the search ran over ``--limit-s`` or a front model does not fit, 2 on bad input (one
``search: error:`` line).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgekd.benchmark.row import check_schema  # noqa: E402
from edgekd.cli import OneLineParser  # noqa: E402
from edgekd.limits import out_of_range  # noqa: E402 - after the repository is on the path


def edgekd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edgekd", *args], cwd=REPO, env=env, capture_output=True, text=True)


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml")
    parser.add_argument("--budget", default="flash_kb=64,device=cortex-m4-120mhz")
    parser.add_argument("--space", help="space YAML (default: the registry's student families)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--trial-epochs", type=int)
    parser.add_argument("--finalists", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--out", default="runs/search-bench")
    parser.add_argument("--limit-s", type=float, default=600.0, help="the search's time limit (default 10 min)")
    parser.add_argument("--fresh", action="store_true", help="delete --out first (a search continues otherwise)")
    args = parser.parse_args()
    # --trial-epochs 0 would silently mean the default
    problems = out_of_range(args, at_least={"trials": 1, "trial_epochs": 1, "finalists": 0}, positive=("limit_s",))
    if problems:
        print(f"search: error: {problems[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.fresh and out.exists():
        if not (out / "search.json").is_file():
            print(f"search: error: {out} is not a search folder; not deleting it", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    cmd = [
        "search",
        "--config",
        args.config,
        "--budget",
        args.budget,
        "--trials",
        str(args.trials),
        "--finalists",
        str(args.finalists),
        "--out",
        str(out),
    ]
    cmd += ["--space", args.space] if args.space else []
    cmd += ["--trial-epochs", str(args.trial_epochs)] if args.trial_epochs else []
    for kv in args.set:
        cmd += ["--set", kv]
    print("$ edgekd " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = edgekd(*cmd)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime  # the search's whole process tree: independent of other load
    load = os.getloadavg()[0]
    # only into a search folder: a user's folder that the search refused stays as it was
    (out / "search.log").write_text(proc.stdout + proc.stderr) if (out / "search.json").is_file() else None
    refused = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgekd: error: ")]
    if proc.returncode == 2 and refused:  # bad input (a config, budget or folder): the search's own one line
        print(f"search: error: {refused[-1].removeprefix('edgekd: error: ')}", file=sys.stderr)
        return 2
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        print(f"search failed (exit {proc.returncode})")
        return 1
    result = json.loads((out / "pareto.json").read_text())
    budget = result["budget"]
    print(
        f"search wall {wall:.0f} s (limit {args.limit_s:.0f} s): {'within' if wall <= args.limit_s else 'OVER'}; "
        f"CPU {cpu:.0f} s (user+sys); load average at the end {load:.1f} on {os.cpu_count()} cores; trials "
        f"{result['counts']}"
    )
    bench_args = ["--mcu", budget["device"]] if budget.get("device") else []
    for key, flag in (("flash_kb", "--flash-kb"), ("ram_kb", "--ram-kb")):
        if budget.get(key) is not None:
            bench_args += [flag, str(budget[key])]
    fails = 0
    print(
        f"{'front model':<28} {'recipe':<6} {'val %':>6} {'flash KB search':>16} {'flash KB bench':>15} "
        f"{'arena KB search':>16} {'arena KB bench':>15}  fits (bench)"
    )
    for p in result["front"]:
        bundle = out / "front-bundles" / p["candidate_key"]
        e = edgekd(
            "export",
            "--run",
            p["run"],
            "--out",
            str(bundle),
            "--set",
            "export.models=[student]",
            "--set",
            "export.formats=[tflite_int8]",
        )
        if e.returncode != 0:
            print(f"{p['candidate_key']}: export failed: {e.stderr.strip().splitlines()[-1:]}")
            fails += 1
            continue
        # beside the bundle, not in it: bench refuses to write into the bundle it reads (outside bench/)
        mcu_json = out / "front-bundles" / f"{p['candidate_key']}.mcu.json"
        b = edgekd("bench", "--device", "mcu", "--artifacts", str(bundle), "--json", str(mcu_json), *bench_args)
        if not mcu_json.is_file():
            print(f"{p['candidate_key']}: MCU bench failed: {b.stderr.strip().splitlines()[-1:]}")
            fails += 1
            continue
        rows = check_schema(json.loads(mcu_json.read_text()), str(mcu_json))["results"]
        row = next(r for r in rows if r["format"] == "tflite_int8")
        t, f = row.get("tflm") or {}, p["figures"]
        fits = b.returncode == 0 and (t.get("budget") or {}).get("fits", True)
        if budget.get("model_kb") is not None:  # the bench checks flash and RAM; the model size here
            fits = fits and t.get("model_bytes", 0) / 1024 <= budget["model_kb"]
        fails += not fits
        print(
            f"{p['candidate_key']:<28} {p['recipe']:<6} {100 * p['val_acc']:>6.2f} "
            f"{f.get('flash_kb', float('nan')):>16.1f} {t.get('flash_bytes', 0) / 1024:>15.1f} "
            f"{f.get('ram_kb', float('nan')):>16.2f} {(t.get('arena_bytes') or 0) / 1024:>15.2f}  "
            f"{'yes' if fits else 'NO'}"
        )
    best = result["best"]
    if best:
        print(
            f"best: {best['candidate_key']} val {100 * best['val_acc']:.2f} % test {100 * best['test_acc']:.2f} % → "
            f"{best['run']}"
        )
    return 1 if fails or wall > args.limit_s else 0


if __name__ == "__main__":
    sys.exit(main())
