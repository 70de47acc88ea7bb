"""Float vs PTQ int8 (each calibration method) vs QAT int8 vs 16x8 for a CIFAR-10 ResNet-8 KD student
and a MobileNetV3-small-like (torchvision ``mobilenet_v3_small``: hard-swish, squeeze-excitation
with hard-sigmoid) KD student: test accuracy, top-1 agreement with the float student, size, host
latency (one thread). ``mnv3_cifar`` is the registry's ``mobilenetv3_small`` (the same blocks for
32×32 inputs), measured from a finished run with ``--run mnv3_cifar=FOLDER``. A row runs each float
student in bf16, a reference for how many decisions any rounding of that size flips.

    python benchmarks/quant.py [--teacher-epochs 3] [--epochs 6] [--qat-epochs 1] [--train-limit 5000]

One teacher (resnet20 unless ``--teacher-arch``) is trained (in the first student's run) and shared by both students.
Each
student is distilled with ``distill.qat`` (KD, then KD under int8 fake quantization), then exported
(``edgekd export``: PTQ int8 through onnx2tf, min-max calibrated on 300 training images; QAT int8
through litert-torch with the learned scales). The float student is also converted by litert-torch
and quantized by ai-edge-quantizer (AEQ) with each calibration method (min-max, percentile, MSE) and
as 16x8 (int16 activations, int8 weights). Every file runs on a seeded, class-balanced sample of
``--test-limit`` images of the CIFAR-10 test split (the export's parity sample; all of it by
default); latency is the median of 200 single-image invokes, one thread (int8 on
XNNPACK; 16x8 on the builtin kernels, which XNNPACK leaves them to). Needs the ``litert`` extra.

The defaults are a short recipe for a shared 2-core CPU (about an hour): the float accuracy is
modest; the point is the float-vs-int8 comparison on the same weights. Rerunning resumes the runs
(``--work`` keeps them) and measures again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
STUDENTS = {
    "resnet8": {"student.arch": "resnet8"},
    # torchvision's MobileNetV3-small: hard-swish, squeeze-excitation (hard-sigmoid), 10 classes
    # BatchNorm momentum 0.1 instead of torchvision's ImageNet-scale 0.01, which keeps a short recipe at chance
    "mnv3": {"student.arch": "torchvision.models:mobilenet_v3_small", "student.bn_momentum": 0.1},
    # the registry's MobileNetV3-small for 32x32 inputs (edgekd.models.mobilenetv3): the same blocks,
    # the first two strides 1, so it ends at 4x4 instead of 1x1 and learns CIFAR-10 properly
    "mnv3_cifar": {"student.arch": "mobilenetv3_small"},
}


def distill_one(key: str, args: argparse.Namespace, work: Path, teacher: Path | None) -> Path:
    """The distill run of student ``key`` (resumed when its folder exists); returns its folder."""
    from edgekd.train.run import distill

    run = work / f"run-{key}"
    overrides = {
        "name": f"quant-{key}",
        "data.name": "cifar10",
        "data.root": str(args.data),
        "data.val_fraction": args.val_fraction,
        "teacher.arch": args.teacher_arch,
        "teacher.epochs": args.teacher_epochs,
        "teacher.lr": 0.1,
        "student.epochs": args.epochs,
        "student.lr": 0.1,
        "distill.baseline": "false",
        "distill.qat.epochs": args.qat_epochs,
        "runtime.device": args.device,
        **({"data.train_limit": args.train_limit} if args.train_limit else {}),
        **({"teacher.checkpoint": str(teacher), "teacher.epochs": 0} if teacher is not None else {}),
        **STUDENTS[key],
    }
    distill(out=run, set=[f"{k}={v}" for k, v in overrides.items()], resume=(run / "config.yaml").is_file())
    return run


def _older_than(path: Path, *sources: Path) -> bool:
    """True when ``path`` is missing or older than any of ``sources``: a file kept in ``--work`` is
    made again once the run's checkpoints change (a QAT stage run again), never measured stale."""
    if not path.is_file():
        return True
    made = path.stat().st_mtime
    return any(s.is_file() and s.stat().st_mtime > made for s in sources)


def measure_one(key: str, run: Path, args: argparse.Namespace, work: Path) -> list[dict]:
    from edgekd.checkpoint import load_model
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.exporters.calibration import CALIBRATIONS, write_ptq
    from edgekd.exporters.export import balanced_sample, export
    from edgekd.exporters.parity import reference_logits
    from edgekd.exporters.to_tflite_litert import torch_to_tflite
    from edgekd.models.wrappers import with_preprocessing

    bundle = work / f"bundle-{key}"
    if _older_than(bundle / "manifest.json", *run.glob("*.pt")):
        export(
            run=run,
            out=bundle,
            set=["export.models=[student]", "export.formats=[tflite_fp32,tflite_int8]"],
            allow_parity_failure=True,
        )
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    run_cfg = load_config(run / "config.yaml")
    data = load_dataset(run_cfg.data)
    # a class-balanced sample (the export's parity sample for the same n and seed): the test split
    # is stored class by class, so its first 2,000 images would be two classes of ten
    idx = balanced_sample(np.asarray(data.test.labels), args.test_limit or len(data.test.labels), run_cfg.seed)
    images = np.ascontiguousarray(data.test.images[idx].transpose(0, 2, 3, 1))
    labels = np.asarray(data.test.labels)[idx]
    # a factory's checkpoint loads only where the caller names the factory (files are data)
    model, ckpt = load_model(run / "student.pt", arch=STUDENTS[key]["student.arch"])
    pixel_model = with_preprocessing(model, ckpt["data"]["mean"], ckpt["data"]["std"])
    float_logits = reference_logits(pixel_model, images)
    float_top1 = float_logits.argmax(1)

    def row(label: str, path: Path, **extra) -> dict:
        from edgekd.runtimes import open_runner

        try:
            runner = open_runner(path, threads=1)
            out = runner.predict(images)
        except Exception as exc:  # noqa: BLE001 - one file that does not run is a row, not the end of the run
            return {"student": key, "model": label, "error": f"does not run: {exc}"}
        top2 = np.sort(out, 1)[:, -2:]
        return {
            "student": key,
            "model": label,
            "acc": float(np.mean(out.argmax(1) == labels)),
            "agree": float(np.mean(out.argmax(1) == float_top1)),
            # disagreements where the file's two top outputs are equal (one output step can hold
            # them both): argmax takes the lower class index, whatever the float student preferred
            "tied_disagree": float(np.mean((out.argmax(1) != float_top1) & (top2[:, 0] == top2[:, 1]))),
            "bytes": path.stat().st_size,
            "ms": _latency(runner, images),
            **extra,
        }

    rows = [
        {
            **row("float (fp32 TFLite)", bundle / "student_fp32.tflite"),
            "acc": float(np.mean(float_top1 == labels)),  # the PyTorch student itself; the file agrees exactly
        }
    ]
    rows.append(bf16_row(key, pixel_model, images, labels, float_top1))
    rows.append(row("PTQ int8 minmax (onnx2tf)", bundle / "student_int8.tflite"))
    # the calibration methods and 16x8 on one float file (litert-torch: ai-edge-quantizer needs its signature)
    ptq = work / f"ptq-{key}"
    calibration = np.ascontiguousarray(data.train.images[:300].transpose(0, 2, 3, 1))
    c, (h, w) = ckpt["data"]["in_channels"], ckpt["data"]["image_size"]
    fp32 = ptq / "student_fp32.tflite"
    if _older_than(fp32, run / "student.pt"):
        torch_to_tflite(pixel_model, (1, c, h, w), {"tflite_fp32": fp32}, calibration)
    variants = [(m, "int8", f"PTQ int8 {m} (AEQ)") for m in CALIBRATIONS.names()] + [("minmax", "int16", "16x8 (AEQ)")]
    for method, acts, label in variants:
        path = ptq / f"student_{method}_{acts}.tflite"
        if _older_than(path, fp32):
            try:
                write_ptq(fp32, path, calibration, method, acts)
            except Exception as exc:  # noqa: BLE001 - one failed variant is a row, not the end of the run
                rows.append({"student": key, "model": label, "error": f"export failed: {exc}"})
                continue
        rows.append(row(label, path))
    qat = bundle / "student_qat_int8.tflite"
    if qat.is_file():
        metrics = manifest["metrics"].get("student_qat_int8.tflite", {})
        rows.append(row("QAT int8 (litert-torch)", qat, vs_fake_quant=metrics.get("top1_agreement")))
    else:
        rows.append({"student": key, "model": "QAT int8 (litert-torch)", "error": "not written by the export"})
    return rows


def bf16_row(key: str, pixel_model, images: np.ndarray, labels: np.ndarray, float_top1: np.ndarray) -> dict:
    """The float student run in bfloat16 (weights and activations, PyTorch): how many decisions a
    rounding without any clipping flips. bf16 keeps 8 significant bits, a relative step of about
    the size of a well-ranged int8 tensor's, so this row shows how many test images sit that close
    to a tie: the part of the int8 disagreement that no calibration or QAT can be blamed for."""
    import copy

    import torch

    from edgekd.exporters.parity import reference_logits

    model = copy.deepcopy(pixel_model).eval().to(torch.bfloat16)
    top1 = reference_logits(lambda x: model(x.to(torch.bfloat16)), images).argmax(1)
    return {
        "student": key,
        "model": "float in bf16 (PyTorch)",
        "acc": float(np.mean(top1 == labels)),
        "agree": float(np.mean(top1 == float_top1)),
        "bytes": None,
        "ms": None,
    }


def _latency(runner, images: np.ndarray, n: int = 200) -> float:
    """Median single-image latency in ms (one thread), after 10 warm-up runs."""
    x = [runner.prepare(img) for img in images[:n]]
    for v in x[:10]:
        runner.invoke(v)
    times = []
    for v in x:
        t = time.perf_counter()
        runner.invoke(v)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| student | model | test acc % | agree w/ float % | vs fake-quant % | KB | ms (1 thread) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['student']} | {r['model']} | {r['error']} | | | | |")
            continue
        fq = f"{100 * r['vs_fake_quant']:.2f}" if r.get("vs_fake_quant") is not None else "—"
        kb = f"{r['bytes'] / 1024:.1f}" if r.get("bytes") is not None else "—"
        ms = f"{r['ms']:.3f}" if r.get("ms") is not None else "—"
        lines.append(
            f"| {r['student']} | {r['model']} | {100 * r['acc']:.2f} | {100 * r['agree']:.2f} | {fq} | {kb} | {ms} |"
        )
    return "\n".join(lines)


class BadInput(Exception):
    """A bad argument: one ``quant: error:`` line and exit 2, before any work."""


RUN_FILES = ("student.pt", "config.yaml", "summary.json")  # what a finished distill run holds


def parse_runs(items: list[str]) -> dict[str, Path]:
    """``--run STUDENT=FOLDER`` → {student: folder}."""
    from edgekd.registry import unknown_name_message

    runs = {}
    for item in items:
        key, sep, folder = item.partition("=")
        if not sep:
            raise BadInput(f"--run {item!r}: expected STUDENT=FOLDER")
        if key not in STUDENTS:
            raise BadInput(f"--run {item!r}: {unknown_name_message('student', key, STUDENTS)}")
        missing = [f for f in RUN_FILES if not (Path(folder) / f).is_file()]
        if missing:
            raise BadInput(f"--run {item!r}: {folder} is not a finished distill run (no {', '.join(missing)})")
        runs[key] = Path(folder)
    return runs


def check_args(args: argparse.Namespace) -> list[str]:
    """The students to run, after every number and name is checked (:class:`BadInput` if not)."""
    from edgekd.limits import out_of_range
    from edgekd.registry import unknown_name_message

    lows = {"teacher_epochs": 1, "epochs": 1, "qat_epochs": 1, "train_limit": 0, "test_limit": 0}
    problems = out_of_range(args, at_least=lows)
    if problems:
        raise BadInput(problems[0])
    if not 0.0 < args.val_fraction < 1.0:
        raise BadInput(f"--val-fraction must be between 0 and 1 (exclusive), got {args.val_fraction}")
    students = [k for k in args.students.split(",") if k]
    for key in students:
        if key not in STUDENTS:
            raise BadInput(f"--students: {unknown_name_message('student', key, STUDENTS)}")
    if not students:
        raise BadInput(f"--students is empty; give some of {', '.join(STUDENTS)}")
    if args.teacher is not None and not args.teacher.is_file():
        raise BadInput(f"--teacher: {args.teacher} not found")
    return students


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-arch", default="resnet20", help="the teacher, trained once for both students")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="teacher epochs")
    parser.add_argument(
        "--teacher", type=Path, default=None, help="a trained teacher.pt to use instead (default: the first run's)"
    )
    parser.add_argument("--epochs", type=int, default=6, help="float KD student epochs")
    parser.add_argument("--qat-epochs", type=int, default=1, help="QAT epochs after the float stage")
    parser.add_argument("--train-limit", type=int, default=5000, help="training images kept (0: all 45,000)")
    parser.add_argument("--val-fraction", type=float, default=0.02, help="share of the training split for val")
    parser.add_argument("--test-limit", type=int, default=0, help="test images measured (0: all 10,000)")
    parser.add_argument("--students", default="resnet8,mnv3", help=f"comma-separated: {', '.join(STUDENTS)}")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="STUDENT=FOLDER",
        help="measure this finished distill run (e.g. a converged one) for STUDENT instead of training it; repeatable",
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-quant"))
    parser.add_argument("--results-file", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    from edgekd.errors import EdgekdError

    try:
        students, finished = check_args(args), parse_runs(args.run)
        rows = run_students(students, finished, args)
    except (BadInput, EdgekdError) as exc:  # a bad argument, a corrupt run or data file: one line
        print(f"quant: error: {exc}", file=sys.stderr)
        return 2
    failed = [f"{r['student']} {r['model']}: {r['error']}" for r in rows if "error" in r]
    for line in failed:
        print(f"quant: failed: {line}", file=sys.stderr)
    return 1 if failed else 0


def run_students(students: list[str], finished: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    """Every row of every student (a file that fails is a row with an ``error``)."""
    rows: list[dict] = []
    teacher: Path | None = args.teacher
    for key in students:
        if key in finished:
            run = finished[key]
        else:
            run = distill_one(key, args, args.work, teacher)
            teacher = teacher or run / "teacher.pt"
        rows += measure_one(key, run, args, args.work)
        print(table(rows), flush=True)  # a partial table survives an interrupted second student
        for r in rows:
            if r["student"] == key and r.get("tied_disagree"):
                print(
                    f"  {key} {r['model']}: {100 * (1 - r['agree']):.2f} % disagree, "
                    f"{100 * r['tied_disagree']:.2f} % of images on an exact tie of its top two outputs"
                )
    if args.results_file:
        from edgekd.atomic import write_json

        write_json(args.results_file, rows)  # strict: a NaN accuracy is an error, not bare NaN
    return rows


if __name__ == "__main__":
    sys.exit(main())
