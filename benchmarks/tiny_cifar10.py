"""The tiny CIFAR-10 model side by side with MLPerf Tiny's reference ResNet-8, on the same JPEG test split.

    python benchmarks/tiny_cifar10.py --seeds 3 --out runs/bench-tiny                    # the full recipe
    python benchmarks/tiny_cifar10.py --fast --subset 2000 --epochs 1 --seeds 1 --out runs/bench-tiny-check  # end to end, minutes

Rows (all int8, full-integer TFLite, on the whole test split of configs/cifar10-tiny.yaml's data):
* ``mlperf-ref``: ``shared/data/mlperf-tiny/resnet8_quant.tflite`` (trained by MLPerf on the PNG
  originals), fed the same uint8 pixels;
* ``nokd``: the config's student trained without KD, identical recipe and seeds (the KD run's baseline);
* ``kd``: the config's student with the config's KD method (``distill.method``);
* ``kd+qat``: the KD student fine-tuned with quantization-aware training, when this edgekd has the
  ``distill.qat`` config section (otherwise the row is skipped with a note).

Columns: accuracy mean ± std over seeds (final epoch, ``distill.select=last``; the teacher is trained
once, seed 0, and its cached outputs are shared by every seed), int8 file KB, MACs (from the file's
ops), host int8 latency at 1 thread (median of single-image invokes), and the TFLite Micro latency
estimate per MCU profile (:mod:`edgekd.mcu.estimate`). Also printed: the teacher's test accuracy and
every stage's wall time. Writes ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

CONFIG = REPO / "configs" / "cifar10-tiny.yaml"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
REFERENCE = REPO.parent / "shared" / "data" / "mlperf-tiny" / "resnet8_quant.tflite"
BUDGET_KB, BUDGET_MACS = 100, 12_500_000  # the reference's: 96 KB int8 flash, 12.5 M MACs


def has_qat() -> bool:
    """Whether this edgekd has the QAT stage (the ``distill.qat`` config section)."""
    from edgekd.config import DistillConfig

    return any(f.name == "qat" for f in dataclasses.fields(DistillConfig))


def host_latency_ms(path: Path, images, runs: int) -> float:
    """Median ms of one single-image invoke at 1 thread, after 10 warm-up invokes."""
    from edgekd.runtimes.tflite_runner import TFLiteRunner

    runner = TFLiteRunner(path, threads=1)
    x = runner.prepare(images[0])
    for _ in range(10):
        runner.invoke(x)
    times = []
    for i in range(runs):
        x = runner.prepare(images[i % len(images)])
        t0 = time.perf_counter()
        runner.invoke(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure_int8(path: Path, test_nhwc, labels, latency_runs: int) -> dict[str, Any]:
    """Accuracy on the test images, size, MACs, host latency and MCU estimates of one int8 file."""
    from edgekd.mcu.estimate import estimates_ms
    from edgekd.runtimes.tflite_runner import TFLiteRunner
    from edgekd.tflite_file import read_tflite

    logits = TFLiteRunner(path, threads=None).predict(test_nhwc)
    model = read_tflite(path)
    return {
        "file": str(path),
        "acc": float((logits.argmax(1) == labels).mean()),
        "kb": round(path.stat().st_size / 1024, 1),
        "macs": int(model.total_macs),
        "host_ms_1t": round(host_latency_ms(path, test_nhwc, latency_runs), 3),
        "mcu_ms": estimates_ms(model),
    }


def int8_files(manifest: dict[str, Any], bundle: Path) -> dict[str, Path]:
    """{file stem: path} of every full-integer int8 model in an export bundle."""
    return {Path(n).stem: bundle / n for n, m in manifest["models"].items() if m["format"] == "tflite_int8"}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_benchmark(
    seeds: int = 3,
    out: str | Path = "runs/bench-tiny",
    data: str | Path = DEFAULT_DATA,
    reference: str | Path = REFERENCE,
    subset: int | None = None,
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    qat_epochs: int = 5,
    fast: bool = False,
    device: str = "auto",
    resume: bool = False,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train (teacher once; then per seed the KD student and its no-KD baseline), export int8,
    measure every row on the same test split; returns (and writes) the results."""
    import numpy as np
    import torch

    from edgekd.atomic import write_json
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.exporters.export import export
    from edgekd.train.run import distill
    from edgekd.train.sweep import train_shared_teacher
    from edgekd.ui import Timer, print_table

    out, total, wall = Path(out), Timer(), {}
    sets = [f"data.root={json.dumps(str(Path(data).resolve()))}", f"runtime.device={device}", "distill.select=last"]
    if subset:
        sets.append(f"data.train_limit={subset}")
    if epochs:
        sets.append(f"student.epochs={epochs}")
        sets.append(f"teacher.epochs={teacher_epochs or epochs}")
    elif teacher_epochs:
        sets.append(f"teacher.epochs={teacher_epochs}")
    if subset or epochs or teacher_epochs:
        # a shortened run checks the code path, not the figures: a teacher of one short epoch is
        # near chance, and the near-chance guard would stop KD
        sets.append("distill.allow_weak_teacher=true")
    if not fast:  # the config's CPU fast path (bf16, channels-last) is on; without --fast: fp32, default layout
        sets += ["runtime.amp=auto", "runtime.channels_last=null"]
    sets += list(extra)
    cfg = load_config(CONFIG, sets)
    qat = has_qat() and qat_epochs > 0
    notes = []
    if has_qat() and not qat:
        notes.append("kd+qat: skipped: --no-qat")
    elif not qat:
        notes.append("kd+qat: skipped: this edgekd has no QAT stage (no `distill.qat` config section)")
    else:
        from edgekd.errors import EdgekdError
        from edgekd.train.pt2e import import_pt2e

        try:
            import_pt2e()
        except EdgekdError as exc:  # the QAT extra is not installed: the other rows still run
            qat = False
            notes.append(f"kd+qat: skipped: {exc}")

    timer = Timer()
    teacher, keys = train_shared_teacher(load_config(CONFIG, [*sets, "name=teacher"]), out / "teacher", resume)
    wall["teacher"] = round(timer.elapsed, 1)
    load_teacher = [f"teacher.checkpoint={json.dumps(keys['teacher']['checkpoint'])}", "teacher.epochs=0"]
    # trained here: a weak one (a shortened recipe) is flagged, not stopped (train_shared_teacher says so)
    load_teacher += [f"distill.{k}={json.dumps(v)}" for k, v in keys.get("distill", {}).items()]

    dataset = load_dataset(cfg.data, log=lambda *a: None)
    test_nhwc = np.ascontiguousarray(dataset.test.images.transpose(0, 2, 3, 1))
    labels = dataset.test.labels
    latency_runs = 50 if fast else 300

    from edgekd.errors import EdgekdError

    failures: list[str] = []
    rows: dict[str, list[dict[str, Any]]] = {"nokd": [], "kd": [], "kd+qat": []}
    for seed in range(seeds):
        folder = out / f"seed{seed}"
        run_sets = [*sets, *load_teacher, f"seed={seed}", f"name=tiny-seed{seed}"] + (
            [f"distill.qat.epochs={qat_epochs}"] if qat else []
        )
        timer = Timer()
        if resume and (folder / "summary.json").is_file():
            summary = json.loads((folder / "summary.json").read_text())
        else:
            summary = distill(
                load_config(CONFIG, run_sets),
                out=folder,
                overwrite=not resume,
                resume=resume and (folder / "config.yaml").is_file(),
            )
        wall[f"seed{seed} distill"] = round(timer.elapsed, 1)
        for role in ("student", "baseline"):
            wall[f"seed{seed} {role}"] = summary[role]["wall_s"]
        timer = Timer()
        bundle = folder / "int8"
        try:
            manifest = export(
                run=folder,
                out=bundle,
                set=[
                    "export.formats=[tflite_int8]",
                    "export.teacher_formats=[tflite_int8]",
                    "export.models=[student,baseline]",
                ],
                allow_parity_failure=True,
            )
        except EdgekdError as exc:  # one seed's export failing is a named failure; the other seeds still run
            failures.append(f"seed{seed} export: {exc}")
            continue
        finally:
            wall[f"seed{seed} export"] = round(timer.elapsed, 1)
        files = int8_files(manifest, bundle)
        for stem, path in sorted(files.items()):
            row = "nokd" if stem.startswith("baseline") else ("kd+qat" if "qat" in stem else "kd")
            rows[row].append(
                {
                    "seed": seed,
                    **measure_int8(path, test_nhwc, labels, latency_runs),
                    "fp32_test_acc": summary.get({"nokd": "baseline", "kd": "student"}.get(row, "student_qat"), {}).get(
                        "last_test_acc"
                    ),
                }
            )
    if qat and not rows["kd+qat"]:
        notes.append(
            "kd+qat: the qat section exists but no QAT int8 model came out of the export (see the run folders)"
        )

    ref = measure_int8(Path(reference), test_nhwc, labels, latency_runs)
    table = [
        {
            "row": "mlperf-ref",
            "seeds": 1,
            "acc_mean": ref["acc"],
            "acc_std": 0.0,
            **{k: ref[k] for k in ("kb", "macs", "host_ms_1t", "mcu_ms")},
        }
    ]
    for name, rs in rows.items():
        if not rs:
            continue
        m, s = mean_std([r["acc"] for r in rs])
        first = rs[0]
        table.append(
            {
                "row": name,
                "seeds": len(rs),
                "acc_mean": m,
                "acc_std": s,
                "kb": first["kb"],
                "macs": first["macs"],
                "host_ms_1t": round(statistics.median(r["host_ms_1t"] for r in rs), 3),
                "mcu_ms": first["mcu_ms"],
            }
        )
    for r in table:
        r["within_budget"] = (
            r["kb"] <= BUDGET_KB and r["macs"] <= BUDGET_MACS * 1.01
        )  # the reference's own 12.50 M counts as inside
    from edgekd.benchmark.host import host_info

    result = {
        "benchmark": "tiny_cifar10",
        "host": {
            **host_info(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {
            "seeds": seeds,
            "subset": subset,
            "epochs": epochs,
            "teacher_epochs": teacher_epochs,
            "fast": fast,
            "overrides": sets,
            "config": str(CONFIG.relative_to(REPO)),
            "test_images": int(len(labels)),
            "qat": qat,
        },
        "teacher": {
            k: teacher.get(k) for k in ("arch", "params", "macs", "test_acc", "last_test_acc", "epochs", "wall_s")
        },
        "table": table,
        "runs": rows,
        "wall_s": {**wall, "total": round(total.elapsed, 1)},
        "notes": notes,
        "failures": failures,
    }
    write_json(out / "results.json", result)
    profiles = sorted(ref["mcu_ms"])
    t = result["teacher"]
    print_table(
        f"Tiny CIFAR-10, int8 on the same {len(labels)}-image JPEG test split; teacher {t['arch']} test {100 * (t['test_acc'] or 0):.2f} %; "
        f"mean ± std over {seeds} seed(s)",
        ["row", "top-1 %", "KB", "MACs", "host ms (1 thread)", "in budget"],
        [
            [
                r["row"],
                f"{100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f}",
                r["kb"],
                f"{r['macs'] / 1e6:.2f} M",
                r["host_ms_1t"],
                "yes" if r["within_budget"] else "no",
            ]
            for r in table
        ],
    )
    print_table(
        "TFLite Micro latency estimates, ms per inference (edgekd.mcu.estimate; profile = core-clock)",
        ["profile", *[r["row"] for r in table]],
        [[p, *[f"{r['mcu_ms'][p]:.1f}" for r in table]] for p in profiles],
    )
    print("wall time (s): " + ", ".join(f"{k} {v}" for k, v in result["wall_s"].items()))
    for note in notes:
        print(f"note: {note}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print(f"wrote {out / 'results.json'}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=3, help="student seeds (default 3)")
    p.add_argument("--out", default="runs/bench-tiny", help="output folder (default runs/bench-tiny)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"CIFAR-10 folder or archive (default {DEFAULT_DATA})")
    p.add_argument("--reference", default=str(REFERENCE), help="the MLPerf Tiny int8 reference model")
    p.add_argument(
        "--subset", type=int, help="train on this many training images (stratified): a quick end-to-end check"
    )
    p.add_argument(
        "--epochs", type=int, help="override the config's epochs (student, and teacher unless --teacher-epochs)"
    )
    p.add_argument("--teacher-epochs", type=int, help="override the teacher's epochs")
    p.add_argument(
        "--qat-epochs", type=int, default=5, help="QAT epochs of the kd+qat row when the QAT stage exists (default 5)"
    )
    p.add_argument("--no-qat", action="store_true", help="skip the kd+qat row even where the QAT stage exists")
    p.add_argument(
        "--fast",
        action="store_true",
        help="the config's CPU fast path (bf16 autocast, channels-last) and fewer latency runs",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="keep finished runs in --out and continue the rest")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for every run, e.g. distill.method=dkd",
    )
    args = p.parse_args(argv)
    for name in ("seeds", "subset", "epochs", "teacher_epochs", "qat_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"tiny_cifar10: error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            return 2
    from edgekd.errors import EdgekdError

    try:
        result = run_benchmark(
            args.seeds,
            args.out,
            args.data,
            args.reference,
            args.subset,
            args.epochs,
            args.teacher_epochs,
            0 if args.no_qat else args.qat_epochs,
            args.fast,
            args.device,
            args.resume,
            tuple(args.set),
        )
    except EdgekdError as exc:
        print(f"tiny_cifar10: error: {exc}", file=sys.stderr)
        return exc.exit_code if getattr(exc, "exit_code", None) else 2
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
