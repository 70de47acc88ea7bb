"""The shape of the TAKD paper's table (Mirzadeh et al. 2020) on CIFAR-10: plain CNN teacher plain10
→ student plain2, rows NOKD / KD / FitNets / TAKD, N seeds each, mean ± std of the FINAL epoch.

    python benchmarks/methods_cifar10.py --recipe cpu --seeds 3 --fast --out runs/bench-methods   # ~40 min, 2 cores
    python benchmarks/methods_cifar10.py --recipe gpu              # the paper's recipe (150 epochs)
    python benchmarks/methods_cifar10.py --recipe cpu --seeds 1 --epochs 1   # end-to-end check

Protocol (methods.md §3, §7):
* the teacher is trained ONCE (seed 0) and shared by every row and seed (``<out>/teacher``);
* every row trains the same student arch with the same recipe; seeds change the student's
  initialization and data order (and the TA's, for TAKD);
* figures are the FINAL epoch's test accuracy (``distill.select=last``): no checkpoint is picked on
  test, and every choice that is made (TAKD's automatic TA) is made on val;
* NOKD is the no-KD baseline of the KD run (identical recipe and seed, hard labels only).

Paper figures (plain CNN 10 → 2, CIFAR-10, as cited in methods.md): NOKD 70.16, KD 72.57,
TAKD 73.51. The ``int8 test %`` column is each student's full-integer int8 TFLite model (:func:`int8_test_acc`).
Writes ``<out>/results.json`` (host info, recipe, every run, mean ± std per row) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz")  # beside the repository
PAPER = {"nokd": 70.16, "kd": 72.57, "takd": 73.51}  # plain CNN 10 → 2, CIFAR-10 (methods.md §3)
ROWS = ("nokd", "kd", "fitnets", "takd")

# recipe → config keys shared by the teacher, the student and every TA. `gpu` is the paper's
# (methods.md §3: SGD momentum 0.9, lr 0.1, 150 epochs, lr ×0.1 at 80 and 120, weight decay
# 1e-4); `cpu` is a short cosine recipe sized for a CPU box (minutes per epoch for plain10).
RECIPES: dict[str, dict[str, Any]] = {
    "gpu": {
        "epochs": 150,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "schedule": "step",
        "milestones": [80, 120],
        "gamma": 0.1,
    },
    "cpu": {"epochs": 10, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "cosine"},
}
# Students and TAs warm up linearly for this many epochs. Under KD at T=4 the soft term's logit
# gradient is about T times CE's, and at the cpu recipe's lr 0.05 a plain CNN without warm-up can
# sit at chance for its first epochs (measured: the plain6 TA at 10 % val for 2 of 10 epochs, a
# plain2 baseline for 1). The teacher (CE only) trains without it; the paper's recipe has none.
STUDENT_WARMUP_EPOCHS = {"gpu": 0, "cpu": 1}
# KD temperature and α of every row, per recipe. cpu: chosen on VAL (seed 0, final epoch, KD row)
# from {2, 4} × {0.5, 0.9}: T=2 α=0.9 66.94 %, T=2 α=0.5 65.88, T=4 α=0.5 65.70, T=4 α=0.9 65.26
# (NOKD 66.78). gpu: the usual T=4, α=0.9 (choose it on val with `edgekd sweep` when you run it).
RECIPE_KD = {"gpu": (4.0, 0.9), "cpu": (2.0, 0.9)}
# FitNets: the teacher's middle (64×16×16 after its 4th conv) guides the student's 2nd conv (16×16×16)
HINT_LAYER, GUIDED_LAYER = "features.12", "features.6"
TA_CANDIDATES = ("plain4", "plain6", "plain8")  # --ta auto


def int8_test_acc(student_pt: Path, run_dir: Path) -> float | None:
    """Test accuracy (0–1) of ``student_pt`` after full-integer int8 conversion (the export stage,
    calibrated on the run's training images), measured on the whole test split.

    int8 conversion can erase a KD gain (methods.md §7), so every row reports it beside fp32. The
    bundle (``<run>/int8-<role>/``) holds only that int8 model; its parity is recorded, not enforced.
    """
    from edgekd.exporters.export import export

    role = student_pt.stem
    fmt = "export.formats" if role == "student" else "export.teacher_formats"
    manifest = export(
        run=run_dir,
        out=run_dir / f"int8-{role}",
        set=[f"{fmt}=[tflite_int8]", f"export.models=[{role}]"],
        allow_parity_failure=True,
    )
    return manifest["metrics"][f"{role}_int8.tflite"]["test_acc"]


def _stage_keys(stage: str, recipe: dict[str, Any], epochs: int) -> list[str]:
    keys = {**recipe, "epochs": epochs}
    return [f"{stage}.{k}={json.dumps(v)}" for k, v in keys.items()]


def base_overrides(
    data_root: str,
    recipe: str,
    epochs: int | None,
    teacher_epochs: int | None,
    device: str,
    temperature: float,
    alpha: float,
    threads: int | None = None,
    fast: bool = False,
) -> list[str]:
    r = RECIPES[recipe]
    # --fast: the CPU fast path (bf16 autocast on CPUs that have it, channels-last); CUDA runs use
    # their own defaults (bf16 autocast, channels-last) either way
    fast_keys = ["runtime.amp=bf16", "runtime.channels_last=true"] if fast and device != "cuda" else []
    return [
        *fast_keys,
        "data.name=cifar10",
        f"data.root={json.dumps(data_root)}",
        "data.batch_size=128",
        "teacher.arch=plain10",
        *_stage_keys("teacher", r, teacher_epochs or epochs or r["epochs"]),
        "student.arch=plain2",
        *_stage_keys("student", {**r, "warmup_epochs": STUDENT_WARMUP_EPOCHS[recipe]}, epochs or r["epochs"]),
        f"distill.temperature={temperature}",
        f"distill.alpha={alpha}",
        "distill.select=last",  # the final epoch is what is reported (and exported)
        f"runtime.device={device}",
        *([f"runtime.threads={threads}"] if threads else []),
    ]


def row_overrides(row: str, hint_epochs: int, ta: str, nokd: bool) -> list[str]:
    if row == "kd":  # its baseline is the NOKD row
        return ["distill.method=kd", f"distill.baseline={str(nokd).lower()}"]
    if row == "fitnets":
        return [
            "distill.method=fitnets",
            f"distill.fitnets.hint_layer={HINT_LAYER}",
            f"distill.fitnets.guided_layer={GUIDED_LAYER}",
            f"distill.fitnets.hint_epochs={hint_epochs}",
            "distill.baseline=false",
        ]
    if row == "takd":
        if ta == "auto":  # the midpoint needs the no-KD accuracy: this row trains its own baseline
            return [
                "distill.method=takd",
                f"distill.takd.assistants={json.dumps(list(TA_CANDIDATES))}",
                "distill.takd.ta_select=auto",
                "distill.baseline=true",
            ]
        return ["distill.method=takd", f"distill.takd.assistants={json.dumps(ta.split(','))}", "distill.baseline=false"]
    raise ValueError(row)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_benchmark(
    recipe: str = "cpu",
    seeds: int = 3,
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    hint_epochs: int | None = None,
    ta: str = "plain6",
    rows: tuple[str, ...] = ROWS,
    data: str = DEFAULT_DATA,
    out: str | Path = "runs/bench-methods",
    device: str = "auto",
    temperature: float | None = None,
    alpha: float | None = None,
    threads: int | None = None,
    resume: bool = False,
    fast: bool = False,
    int8: bool = True,
) -> dict[str, Any]:
    import torch

    from edgekd.config import load_config
    from edgekd.data.sources import cifar10_on_disk
    from edgekd.errors import DataError
    from edgekd.models.registry import MODELS
    from edgekd.train.run import finished_or_trained
    from edgekd.train.sweep import train_shared_teacher
    from edgekd.ui import Timer, print_table

    total = Timer()
    out = Path(out)
    data_root = str(Path(data).resolve())  # a relative path is the caller's, as --out is: from the current folder
    # before the teacher's folder is made: the data, and every TA the TAKD row would build after the teacher
    root = Path(data_root)
    if not cifar10_on_disk(root):
        raise DataError(f"CIFAR-10 not found in {root} (expected cifar-10-batches-py/, train/ + test/ or an archive)")
    if "takd" in rows and ta != "auto":
        for name in ta.split(","):
            MODELS.get(name)  # an unknown name is one line with a did-you-mean
    student_epochs = epochs or RECIPES[recipe]["epochs"]
    hint_epochs = hint_epochs or max(1, round(0.2 * student_epochs))  # FitNets stage 1: a fifth of the budget
    temperature = RECIPE_KD[recipe][0] if temperature is None else temperature
    alpha = RECIPE_KD[recipe][1] if alpha is None else alpha
    base = base_overrides(data_root, recipe, epochs, teacher_epochs, device, temperature, alpha, threads, fast)

    # the teacher: once, seed 0, shared by every row and seed
    teacher_cfg = load_config(None, [*base, "name=teacher"])
    teacher, teacher_keys = train_shared_teacher(teacher_cfg, out / "teacher", resume)
    load_teacher = [f"teacher.checkpoint={json.dumps(teacher_keys['teacher']['checkpoint'])}", "teacher.epochs=0"]
    # trained here: a weak one (a shortened recipe) is flagged, not stopped (train_shared_teacher says so)
    load_teacher += [f"distill.{k}={json.dumps(v)}" for k, v in teacher_keys.get("distill", {}).items()]

    runs: list[dict[str, Any]] = []
    for seed in range(seeds):
        for row in [r for r in rows if r != "nokd"] or ["kd"]:
            folder = out / row / f"seed{seed}"
            cfg = load_config(
                None,
                [
                    *base,
                    *load_teacher,
                    *row_overrides(row, hint_epochs, ta, "nokd" in rows),
                    f"seed={seed}",
                    f"name={row}-seed{seed}",
                ],
            )
            summary = finished_or_trained(cfg, folder, resume)
            produced = [(row, "student")] + ([("nokd", "baseline")] if "nokd" in rows and row == "kd" else [])
            for name, role in produced:
                r = summary[role]
                runs.append(
                    {
                        "row": name,
                        "seed": seed,
                        "arch": r["arch"],
                        "params": r["params"],
                        "macs": r["macs"],
                        "final_val_acc": r["last_val_acc"],
                        "final_test_acc": r["last_test_acc"],
                        "int8_test_acc": int8_test_acc(folder / r["checkpoint"], folder) if int8 else None,
                        "epochs": r["epochs"],
                        "wall_s": r["wall_s"],
                        "run": str(folder.relative_to(out)),
                        **(
                            {
                                "links": [
                                    {k: link[k] for k in ("name", "teacher", "arch", "last_val_acc", "last_test_acc")}
                                    for link in summary["links"]
                                ]
                            }
                            if "links" in summary
                            else {}
                        ),
                        **({"ta_select": summary["ta_select"]} if "ta_select" in summary else {}),
                    }
                )

    table = []
    for name in rows:
        rs = [r for r in runs if r["row"] == name]
        if not rs:
            continue
        test_m, test_s = _mean_std([100 * r["final_test_acc"] for r in rs])
        val_m, val_s = _mean_std([100 * r["final_val_acc"] for r in rs])
        int8 = [100 * r["int8_test_acc"] for r in rs if r["int8_test_acc"] is not None]
        table.append(
            {
                "row": name,
                "arch": rs[0]["arch"],
                "params": rs[0]["params"],
                "seeds": len(rs),
                "test_mean": round(test_m, 2),
                "test_std": round(test_s, 2),
                "val_mean": round(val_m, 2),
                "val_std": round(val_s, 2),
                "int8_test_mean": round(statistics.fmean(int8), 2) if len(int8) == len(rs) else None,
                "paper_test": PAPER.get(name),
            }
        )
    result = {
        "benchmark": "methods_cifar10",
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "recipe": recipe,
        "settings": {
            "seeds": seeds,
            "student_epochs": student_epochs,
            "teacher_epochs": teacher_epochs or epochs or RECIPES[recipe]["epochs"],
            "hint_epochs": hint_epochs,
            "student_warmup_epochs": STUDENT_WARMUP_EPOCHS[recipe],
            "ta": ta,
            "temperature": temperature,
            "alpha": alpha,
            "recipe_keys": RECIPES[recipe],
            "data": data,
        },
        "teacher": {k: teacher[k] for k in ("arch", "params", "macs", "val_acc", "test_acc", "epochs", "wall_s")},
        "table": table,
        "runs": runs,
        "int8": (
            "int8_test_acc: the full-integer int8 TFLite model of each run on the whole test split (export stage); "
            "null: --no-int8"
        ),
        "wall_s": round(total.elapsed, 1),
    }
    from edgekd.atomic import write_json

    write_json(out / "results.json", result)
    t = result["teacher"]
    print_table(
        f"CIFAR-10, plain10 teacher (test {100 * t['test_acc']:.2f} %) → plain2, {recipe} recipe, "
        f"{student_epochs} epochs, final epoch, mean ± std over {seeds} seed(s)",
        ["row", "arch", "params", "val acc %", "test acc %", "int8 test %", "paper test %"],
        [
            [
                r["row"].upper(),
                r["arch"],
                r["params"],
                f"{r['val_mean']:.2f} ± {r['val_std']:.2f}",
                f"{r['test_mean']:.2f} ± {r['test_std']:.2f}",
                r["int8_test_mean"],
                r["paper_test"],
            ]
            for r in table
        ],
    )
    print(f"wrote {out / 'results.json'} ({result['wall_s']:.0f} s)")
    return result


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    p = OneLineParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--recipe",
        metavar="{" + ",".join(sorted(RECIPES)) + "}",
        default="cpu",
        help="cpu: short cosine recipe; gpu: the paper's (150 epochs, lr 0.1, steps at 80/120)",
    )
    p.add_argument("--seeds", type=int, default=3, help="student seeds per row (default 3)")
    p.add_argument(
        "--epochs",
        type=int,
        help="override the recipe's epochs (students, TAs, and the teacher unless --teacher-epochs)",
    )
    p.add_argument("--teacher-epochs", type=int, help="override the teacher's epochs")
    p.add_argument("--hint-epochs", type=int, help="FitNets stage-1 epochs (default: a fifth of the student's)")
    p.add_argument(
        "--ta",
        default="plain6",
        help="TAKD assistants, comma-separated chain (default plain6: 10 → 6 → 2), or 'auto' (candidates plain4,6,8)",
    )
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to run (default {','.join(ROWS)})")
    p.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"CIFAR-10 folder or archive (default {DEFAULT_DATA})",
    )
    p.add_argument("--out", default="runs/bench-methods", help="output folder (default runs/bench-methods)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--temperature", type=float, help="KD temperature for every row (default: the recipe's, cpu 2, gpu 4)"
    )
    p.add_argument("--alpha", type=float, help="KD soft-term weight for every row (default: the recipe's, 0.9)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="keep finished runs in --out and continue the rest")
    p.add_argument(
        "--fast",
        action="store_true",
        help="CPU fast path: bf16 autocast + channels-last (about 2x on CPUs with native bf16)",
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 column (no export of every student)")
    args = p.parse_args(argv)
    from edgekd.limits import out_of_range
    from edgekd.registry import unknown_name_message

    rows = tuple(r.strip().lower() for r in args.rows.split(",") if r.strip())
    problems = [unknown_name_message("row", r, ROWS) for r in rows if r not in ROWS]
    if args.recipe not in RECIPES:
        problems.insert(0, unknown_name_message("recipe", args.recipe, sorted(RECIPES)))
    if not rows:
        problems.append(f"--rows names no row (available: {', '.join(ROWS)})")
    counts = ("seeds", "epochs", "teacher_epochs", "hint_epochs", "threads")
    problems += out_of_range(args, at_least=dict.fromkeys(counts, 1))  # 0 would silently mean "the default"
    if problems:
        print(f"methods_cifar10: error: {problems[0]}", file=sys.stderr)
        return 2
    from edgekd.errors import EdgekdError

    try:
        run_benchmark(
            args.recipe,
            args.seeds,
            args.epochs,
            args.teacher_epochs,
            args.hint_epochs,
            args.ta,
            rows,
            args.data,
            args.out,
            args.device,
            args.temperature,
            args.alpha,
            args.threads,
            args.resume,
            args.fast,
            not args.no_int8,
        )
    except EdgekdError as exc:
        print(f"methods_cifar10: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
