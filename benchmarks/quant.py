"""Float vs PTQ int8 vs QAT int8 for a CIFAR-10 ResNet-8 KD student and a MobileNetV3-small-like
(hard-swish) student: test accuracy, top-1 agreement with the float student, size, host latency.

    python benchmarks/quant.py [--epochs 30] [--qat-epochs 5] [--train-limit N] [--students resnet8,mnv3]

Each student is distilled from a resnet20 teacher (``edgekd distill`` with ``distill.qat``), then
exported (``edgekd export``: PTQ int8 through onnx2tf calibrated with min-max on 300 training
images, QAT int8 through litert-torch with the learned scales); the float student is also
converted by litert-torch and quantized by ai-edge-quantizer (AEQ) with each calibration method
(min-max, percentile, MSE) and as 16x8 (int16 activations). Every file runs on the CIFAR-10 test
split here; latency is the median of 200 single-image invokes, one thread. Needs the ``litert`` extra. The defaults are the full figures (hours on
a CPU); ``--epochs 3 --qat-epochs 1 --train-limit 5000`` is a quick check, not a result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
STUDENTS = {
    "resnet8": {"student.arch": "resnet8"},
    # torchvision's MobileNetV3-small: hard-swish, squeeze-excitation (hard-sigmoid), 10 classes
    "mnv3": {"student.arch": "torchvision.models:mobilenet_v3_small"},
}


def run_one(key: str, args: argparse.Namespace, work: Path) -> list[dict]:
    from edgekd.exporters.export import export
    from edgekd.exporters.parity import reference_logits
    from edgekd.runtimes import open_runner
    from edgekd.train.run import distill

    run, bundle = work / f"run-{key}", work / f"bundle-{key}"
    overrides = {
        "name": f"quant-{key}",
        "data.name": "cifar10",
        "data.root": str(args.data),
        "teacher.arch": "resnet20",
        "teacher.epochs": args.epochs,
        "teacher.lr": 0.1,
        "student.epochs": args.epochs,
        "student.lr": 0.1,
        "distill.baseline": "false",
        "distill.qat.epochs": args.qat_epochs,
        "runtime.device": args.device,
        **({"data.train_limit": args.train_limit} if args.train_limit else {}),
        **STUDENTS[key],
    }
    distill(out=run, set=[f"{k}={v}" for k, v in overrides.items()], resume=(run / "config.yaml").is_file())
    manifest = export(
        run=run,
        out=bundle,
        set=["export.models=[student]", "export.formats=[pytorch,tflite_fp32,tflite_int8]"],
        allow_parity_failure=True,
    )
    from edgekd.checkpoint import load_model
    from edgekd.config import load_config
    from edgekd.data import load_dataset
    from edgekd.models.wrappers import with_preprocessing

    data = load_dataset(load_config(run / "config.yaml").data)
    images = data.test.images.transpose(0, 2, 3, 1)
    labels = data.test.labels
    model, ckpt = load_model(run / "student.pt")
    float_logits = reference_logits(with_preprocessing(model, ckpt["data"]["mean"], ckpt["data"]["std"]), images)
    rows = [
        {
            "student": key,
            "model": "float (PyTorch)",
            "acc": float(np.mean(float_logits.argmax(1) == labels)),
            "agree": 1.0,
            "bytes": (bundle / "student_fp32.tflite").stat().st_size,
            "ms": _latency(open_runner(bundle / "student_fp32.tflite"), images),
        }
    ]
    for name, label in (("student_int8.tflite", "PTQ int8 (min-max)"), ("student_qat_int8.tflite", "QAT int8")):
        if not (bundle / name).is_file():
            rows.append({"student": key, "model": label, "error": "not written"})
            continue
        runner = open_runner(bundle / name)
        out = runner.predict(images)
        rows.append(
            {
                "student": key,
                "model": label,
                "acc": float(np.mean(out.argmax(1) == labels)),
                "agree": float(np.mean(out.argmax(1) == float_logits.argmax(1))),
                "bytes": (bundle / name).stat().st_size,
                "ms": _latency(runner, images),
                "vs_fake_quant": manifest["metrics"][name].get("top1_agreement")
                if name.startswith("student_qat")
                else None,
            }
        )
    # the calibration methods and 16×8 on one float file (litert-torch: ai-edge-quantizer needs its signature)
    from edgekd.exporters.calibration import CALIBRATIONS, write_ptq
    from edgekd.exporters.to_tflite_litert import torch_to_tflite

    ptq = work / f"ptq-{key}"
    calibration = np.ascontiguousarray(data.train.images[:300].transpose(0, 2, 3, 1))
    c, (h, w) = ckpt["data"]["in_channels"], ckpt["data"]["image_size"]
    fp32 = ptq / "student_fp32.tflite"
    torch_to_tflite(
        with_preprocessing(model, ckpt["data"]["mean"], ckpt["data"]["std"]),
        (1, c, h, w),
        {"tflite_fp32": fp32},
        calibration,
    )
    variants = [(m, "int8", f"PTQ int8 ({m}, AEQ)") for m in CALIBRATIONS.names()] + [
        ("minmax", "int16", "PTQ 16x8 (AEQ)")
    ]
    for method, acts, label in variants:
        try:
            path = write_ptq(fp32, ptq / f"student_{method}_{acts}.tflite", calibration, method, acts)
        except Exception as exc:  # noqa: BLE001 - one failed variant is a row, not the end of the run
            rows.append({"student": key, "model": label, "error": f"export failed: {exc}"})
            continue
        runner = open_runner(path)
        out = runner.predict(images)
        rows.append(
            {
                "student": key,
                "model": label,
                "acc": float(np.mean(out.argmax(1) == labels)),
                "agree": float(np.mean(out.argmax(1) == float_logits.argmax(1))),
                "bytes": path.stat().st_size,
                "ms": _latency(runner, images),
            }
        )
    return rows


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="teacher and float student epochs")
    parser.add_argument("--qat-epochs", type=int, default=5, help="QAT epochs after the float stage")
    parser.add_argument("--train-limit", type=int, default=None, help="keep this many training images (quick checks)")
    parser.add_argument("--students", default="resnet8,mnv3", help=f"comma-separated: {', '.join(STUDENTS)}")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-quant"))
    parser.add_argument("--results-file", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    for key in args.students.split(","):
        rows += run_one(key, args, args.work)
    print(
        f"{'student':<8} {'model':<20} {'test acc %':>10} {'agree w/ float %':>16} {'vs fake-quant %':>15} {'bytes':>9} {'ms':>7}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['student']:<8} {r['model']:<20} {r['error']}")
            continue
        fq = f"{100 * r['vs_fake_quant']:.2f}" if r.get("vs_fake_quant") is not None else "—"
        print(
            f"{r['student']:<8} {r['model']:<20} {100 * r['acc']:>10.2f} {100 * r['agree']:>16.2f} {fq:>15} {r['bytes']:>9,} {r['ms']:>7.3f}"
        )
    if args.results_file:
        args.results_file.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
