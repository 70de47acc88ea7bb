"""KD training throughput, side by side in one run: edgekd vs torchdistill vs a plain PyTorch loop.

Same work for every system: the same teacher (weights shared through one file) and student, the
same CIFAR-10 JPEG images (``--images`` of the training set), batch size, epochs, augmentation
(random crop with 4-pixel padding + horizontal flip, fresh every epoch — so edgekd's teacher-output
cache does not apply), loss ``(1-α)·CE + α·T²·KL`` and SGD. Each system runs in its own process;
only the training loop is timed (data loading included, evaluation excluded). torchdistill is
installed into its own virtual environment (``--venv``), which sees this environment's torch.

edgekd runs with its fast path for the device: on a CPU with bf16 support (AVX512-BF16/AMX)
bf16 autocast + channels-last, on CUDA its defaults (bf16 autocast, channels-last, data on the
GPU). ``--variants`` adds edgekd's bit-reproducible fp32 default (channels-last) and the same in
NCHW (``runtime.channels_last=false``, the CPU default before channels-last measured faster).

Prints, last: one line per system ``SYSTEM img/s=N``, then ``ratio edgekd/torchdistill=R ratio edgekd/plain=R``.

    python benchmarks/train_speed.py --device cpu --epochs 1 --images 10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCHDISTILL = "torchdistill==1.1.5"
DEVICES = ("cpu", "cuda")


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def ensure_torchdistill_venv(venv: Path) -> Path:
    """A venv with torchdistill alone; this environment's site-packages (torch…) are visible to it
    through a .pth file, so no second multi-GB torch install is needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "edgekd-bench-base.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
    probe = subprocess.run([str(python), "-c", "import torchdistill"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", TORCHDISTILL], check=True)
    return python


def prepare(args, work: Path) -> tuple[Path, Path]:
    """(ImageFolder train root, teacher weights file)."""
    import torch

    from edgekd.data.archive import extract_once, find_layout_root, is_archive
    from edgekd.errors import DataError
    from edgekd.models import create_model

    data = Path(args.data)
    if not is_archive(data) and not data.is_dir():
        raise DataError(f"--data {data}: no such folder or archive (a CIFAR-10 JPEG ImageFolder: train/ + test/)")
    root = find_layout_root(extract_once(data, log=lambda m: print(m, file=sys.stderr)) if is_archive(data) else data)
    if not (root / "train").is_dir():
        raise DataError(f"--data {data}: no train/ folder in it (a CIFAR-10 JPEG ImageFolder: train/ + test/)")
    torch.manual_seed(args.seed)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "teacher.pt"
    torch.save(create_model(args.teacher, 10, 3, (32, 32)).state_dict(), weights)
    return root / "train", weights


def run_edgekd(args, weights: Path, work: Path, variant: str) -> dict:
    """One edgekd run: ``fast`` (the device's fast path), ``fp32`` (the default) or ``fp32-nchw``."""
    name = "edgekd" if variant == "fast" else f"edgekd-{variant}"
    out = work / name
    overrides = {
        "data.name": "cifar10",
        "data.root": str(Path(args.data).resolve()),
        "data.train_limit": args.images,
        "data.batch_size": args.batch_size,
        "teacher.arch": args.teacher,
        "teacher.checkpoint": str(weights),
        "teacher.epochs": 0,
        # a seeded random teacher (the same weights for all three loops): speed is measured, not
        # accuracy, so the near-chance gate on a loaded teacher does not apply
        "distill.allow_weak_teacher": "true",
        "student.arch": args.student,
        "student.epochs": args.epochs,
        "student.lr": 0.1,
        "student.warmup_epochs": 0,
        "distill.temperature": args.temperature,
        "distill.alpha": args.alpha,
        "distill.baseline": "false",
        "runtime.device": args.device,
        "seed": args.seed,
    }
    if variant == "fast" and args.device == "cpu":
        overrides["runtime.channels_last"] = "true"
        overrides["runtime.amp"] = "bf16" if cpu_has_bf16() else "off"
    if variant == "fp32":  # the default: fp32, channels-last (on CPUs too since it measured faster)
        overrides["runtime.amp"] = "off"
    if variant == "fp32-nchw":  # the default before that
        overrides.update({"runtime.amp": "off", "runtime.channels_last": "false"})
    cmd = [sys.executable, "-m", "edgekd", "-q", "distill", "--out", str(out), "--overwrite"]
    for k, v in overrides.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"edgekd run failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    student = [r for r in records if r["stage"] == "student"]
    summary = json.loads((out / "summary.json").read_text())
    per_epoch = summary["data"]["sizes"]["train"] // args.batch_size * args.batch_size
    images = per_epoch * len(student)
    train_s = sum(r["train_s"] for r in student)
    return {
        "system": name,
        "images": images,
        "train_s": train_s,
        "img_per_s": images / train_s,
        "settings": summary["device"],
    }


def run_worker(system: str, python: str, args, train_root: Path, weights: Path) -> dict:
    cmd = [
        python,
        str(REPO / "benchmarks" / "speed_workers.py"),
        system,
        "--train-root",
        str(train_root),
        "--teacher",
        args.teacher,
        "--teacher-weights",
        str(weights),
        "--student",
        args.student,
        "--images",
        str(args.images),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--temperature",
        str(args.temperature),
        "--alpha",
        str(args.alpha),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{system} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    p = OneLineParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", metavar="{" + ",".join(DEVICES) + "}", default="cpu")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--images", type=int, default=10000, help="training images per epoch (default 10000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers of the reference loops"
    )
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    p.add_argument("--venv", default=str(REPO / ".bench" / "torchdistill-venv"), help="where torchdistill is installed")
    p.add_argument("--work", default=str(REPO / ".bench" / "train-speed"))
    p.add_argument("--repeats", type=int, default=1, help="alternate the systems this many times; medians are reported")
    p.add_argument(
        "--variants", action="store_true", help="also run edgekd's fp32 default (channels-last) and fp32 NCHW"
    )
    p.add_argument("--skip-torchdistill", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all results here")
    args = p.parse_args(argv)
    from edgekd.errors import EdgekdError
    from edgekd.limits import out_of_range
    from edgekd.models.registry import MODELS
    from edgekd.outputs import check_report_json, report_json
    from edgekd.registry import unknown_name_message

    problems = [unknown_name_message("device", args.device, DEVICES)] if args.device not in DEVICES else []
    problems += [MODELS.unknown_message(a) for a in (args.teacher, args.student) if a not in MODELS]
    lows = {"epochs": 1, "images": 1, "batch_size": 1, "workers": 0, "repeats": 1}
    problems += out_of_range(args, at_least=lows, positive=("temperature",), fractions=("alpha",))
    work = Path(args.work)
    if work.exists() and not work.is_dir():
        problems.append(f"--work {work} is a file, not a folder")
    try:
        check_report_json(args.json, "train_speed")
    except EdgekdError as exc:
        problems.append(str(exc))
    if problems:
        print(f"train_speed: error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        train_root, weights = prepare(args, work)  # the data checked before anything is written
    except EdgekdError as exc:
        print(f"train_speed: error: {exc}", file=sys.stderr)
        return 2
    td_python = None if args.skip_torchdistill else str(ensure_torchdistill_venv(Path(args.venv)))
    runs: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        jobs = [("edgekd", lambda: run_edgekd(args, weights, work, "fast"))]
        if args.variants:
            jobs.append(("edgekd-fp32", lambda: run_edgekd(args, weights, work, "fp32")))
            jobs.append(("edgekd-fp32-nchw", lambda: run_edgekd(args, weights, work, "fp32-nchw")))
        if td_python:
            jobs.append(("torchdistill", lambda: run_worker("torchdistill", td_python, args, train_root, weights)))
        jobs.append(("plain", lambda: run_worker("plain", sys.executable, args, train_root, weights)))
        for name, job in jobs:
            result = job()
            runs.setdefault(name, []).append(result)
            print(
                f"[{r + 1}/{args.repeats}] {name:<13} {result['img_per_s']:8.1f} img/s  ({result['images']} images in "
                f"{result['train_s']:.1f} s)",
                file=sys.stderr,
            )
    best = {name: statistics.median(x["img_per_s"] for x in results) for name, results in runs.items()}
    if args.json:
        from edgekd.atomic import write_json

        write_json(args.json, report_json("train_speed", {"args": vars(args), "runs": runs, "img_per_s": best}))
    print(
        f"device={args.device} teacher={args.teacher} student={args.student} batch={args.batch_size} "
        f"images={args.images} epochs={args.epochs} "
        f"edgekd={runs['edgekd'][0]['settings']}"
    )
    for name, value in best.items():
        print(f"{name} img/s={value:.1f}")
    ratios = []
    if "torchdistill" in best:
        ratios.append(f"ratio edgekd/torchdistill={best['edgekd'] / best['torchdistill']:.2f}")
    ratios.append(f"ratio edgekd/plain={best['edgekd'] / best['plain']:.2f}")
    print(" ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
