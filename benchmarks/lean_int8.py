"""An edgekd int8 ResNet-8 against the MLPerf Tiny reference ResNet-8, side by side.

Same input image, interleaved rounds, 1 and 2 threads, XNNPACK and builtin kernels (LiteRT), plus
ops, MACs, the MCU latency estimate (Cortex-M7 280 MHz) and the TFLite Micro arena of each file::

    PYTHONPATH=. python benchmarks/lean_int8.py --edgekd artifacts/r8/student_int8.tflite \\
        --eval artifacts/r8/eval.npz [--extra old=artifacts/r8-old/student_int8.tflite] [--op-probe]

``--op-probe`` also times single-op int8 models (MEAN vs AVERAGE_POOL_2D on 8×8×64, the 1×1
DEPTHWISE_CONV_2D of the input normalization, a PAD) in the same configurations: it needs
TensorFlow (the onnx2tf export extra) to build them. ``--per-op`` cuts every file into single-op
models (each op with its own weights and quantization parameters) and times them interleaved, op
beside op: where the time of each file goes, and which op of edgekd's is slower than the
reference's. The last line is
``ratio edgekd/mlperf=<x>``: XNNPACK, 1 thread, median invoke time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekd.atomic import write_json
from edgekd.benchmark.int8_compare import compare_int8, describe, interleaved_latency, op_slices
from edgekd.benchmark.worker import load_eval
from edgekd.cli import OneLineParser
from edgekd.errors import EdgekdError
from edgekd.fdcapture import captured_fds
from edgekd.limits import out_of_range
from edgekd.outputs import check_report_json, report_json
from edgekd.ui import print_table

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mlperf-tiny" / "resnet8_quant.tflite"


def op_probe_models(folder: Path) -> dict[str, Path]:
    """Single-op int8 models at ResNet-8's shapes, converted by TensorFlow's own converter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_fds((1, 2)):
        import tensorflow as tf

    def convert(layer, shape: tuple[int, ...], name: str) -> Path:
        inp = tf.keras.Input(shape=shape[1:], batch_size=1)
        converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, layer(inp)))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(20))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        path = folder / f"{name}.tflite"
        with captured_fds((1, 2)):  # TensorFlow's converter logs to both
            path.write_bytes(converter.convert())
        return path

    return {
        "MEAN 8x8x64": convert(tf.keras.layers.GlobalAveragePooling2D(keepdims=True), (1, 8, 8, 64), "mean"),
        "AVERAGE_POOL_2D 8x8x64": convert(tf.keras.layers.AveragePooling2D(8), (1, 8, 8, 64), "avgpool"),
        "DEPTHWISE 1x1 32x32x3": convert(tf.keras.layers.DepthwiseConv2D(1), (1, 32, 32, 3), "dw"),
        "PAD 32x32x16": convert(tf.keras.layers.ZeroPadding2D(1), (1, 32, 32, 16), "pad"),
    }


def per_op_table(files: dict[str, Path], runs: int, warmup: int, rounds: int) -> dict[str, dict]:
    """Every op of every file timed alone (1 thread, both kernel sets, all files' ops interleaved);
    prints one table per kernel set, the ops of all files joined by their signature."""
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-per-op-") as tmp:
        # a folder per file: two bundles' files share a name (student_int8.tflite)
        slices = {name: op_slices(path, Path(tmp) / str(i)) for i, (name, path) in enumerate(files.items())}
        keys = list(dict.fromkeys(k for per in slices.values() for k in per))
        flat = {f"{name}|{k}": p for name, per in slices.items() for k, p in per.items()}
        for kernels in ("xnnpack", "builtin"):
            timing = interleaved_latency(flat, None, 1, kernels, runs, warmup, rounds)
            us = {k: {n: 1000 * timing[f"{n}|{k}"]["median_ms"] for n in files if f"{n}|{k}" in timing} for k in keys}
            rows = []
            for k in keys:
                ratio = us[k]["edgekd"] / us[k]["mlperf"] if {"edgekd", "mlperf"} <= set(us[k]) else None
                rows.append([k, *(f"{us[k][n]:.1f}" if n in us[k] else "-" for n in files), _fmt(ratio)])
            sums = {n: sum(v[n] for v in us.values() if n in v) for n in files}
            rows.append(["sum", *(f"{sums[n]:.1f}" for n in files), _fmt(sums["edgekd"] / sums["mlperf"])])
            print_table(
                f"single ops, {kernels}, 1 thread, median µs (load {os.getloadavg()[0]:.1f})",
                ["op", *files, "edgekd/mlperf"],
                rows,
            )
            report[kernels] = {"median_us": us, "sum_us": sums}
    return report


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--edgekd", required=True, type=Path, help="the edgekd int8 ResNet-8 (a bundle's student_int8.tflite)"
    )
    p.add_argument("--reference", type=Path, default=REFERENCE, help="MLPerf Tiny ResNet-8 (default: %(default)s)")
    p.add_argument(
        "--extra", action="append", default=[], metavar="NAME=PATH", help="more int8 files to time alongside"
    )
    p.add_argument(
        "--eval", type=Path, help="eval.npz (raw uint8 NHWC images + labels): top-1 of every file, and the timed image"
    )
    p.add_argument(
        "--runs", type=int, default=600, help="timed invokes per file and configuration (default: %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=50, help="untimed invokes first (default: %(default)s)")
    p.add_argument("--op-probe", action="store_true", help="also time single-op models (needs TensorFlow)")
    p.add_argument(
        "--per-op", action="store_true", help="also time every op of every file as a single-op model, at 1 thread"
    )
    p.add_argument("--json", type=Path, help="write the full report here")
    args = p.parse_args()
    try:
        return compare(args)
    except EdgekdError as exc:  # a bad flag, a missing or unreadable file: one line, no traceback
        print(f"lean_int8: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", None) or 2


def compare(args: argparse.Namespace) -> int:
    """Every check on the input first, then the comparison, its tables and the ratio line."""
    problems = out_of_range(args, at_least={"runs": 1, "rounds": 1, "warmup": 0})
    if problems:
        raise EdgekdError(problems[0])
    check_report_json(args.json, "lean_int8")
    files = {"edgekd": args.edgekd, "mlperf": args.reference}
    for item in args.extra:
        name, _, path = item.partition("=")
        if not name or not path:
            raise EdgekdError(f"--extra takes NAME=PATH, got {item!r}")
        files[name] = Path(path)
    for name, path in files.items():
        if not path.is_file():
            raise EdgekdError(f"{name}: no such file {path}")
    eval_data, image = None, np.full((32, 32, 3), 128, np.uint8)
    if args.eval:
        if not args.eval.is_file():
            raise EdgekdError(f"--eval: no such file {args.eval}")
        eval_data = load_eval(args.eval)  # a truncated or foreign file is one line
        image = eval_data[0][0]
    from edgekd.tflite_file import read_tflite

    for name, path in files.items():  # every file is fed this image: its input must take it
        model = read_tflite(path)  # not a TFLite file: one line
        shape = tuple(model.tensors[model.inputs[0]].shape[1:])
        if shape != image.shape:
            raise EdgekdError(
                f"{name}: {path} takes {'×'.join(map(str, shape))} inputs, the image is "
                f"{'×'.join(map(str, image.shape))}" + ("" if args.eval else " (give its --eval images)")
            )

    report = compare_int8(files, image, runs=args.runs, warmup=args.warmup, rounds=args.rounds, eval_data=eval_data)
    report["host"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    rows = []
    for name, d in report["files"].items():
        top1 = f"{100 * d['top1']:.2f} (n={d['top1_n']})" if "top1" in d else "-"
        arena = d["tflm"].get("arena_bytes") or d["tflm"].get("error", "-")
        rows.append(
            [
                name,
                d["bytes"],
                f"{d['macs']:,}",
                len(d["ops"]),
                f"{d['mcu_estimate_ms']['cortex-m7-280mhz']:.2f}",
                arena,
                top1,
            ]
        )
    print_table(
        "int8 files", ["file", "bytes", "MACs", "ops", "MCU est. ms (M7 280 MHz)", "TFLM arena B", "top-1 %"], rows
    )
    for name, d in report["files"].items():
        print(f"{name}: {' '.join(d['ops'])}")
    rows = []
    for row in report["latency"]:
        t = row["files"]
        ratio = t["edgekd"]["median_ms"] / t["mlperf"]["median_ms"]
        cells = [f"{t[n]['median_ms']:.3f} / {t[n]['p90_ms']:.3f}" for n in files]
        rows.append([row["kernels"], row["threads"], *cells, f"{ratio:.3f}"])
    print_table(
        f"invoke ms, median / p90 ({args.runs} runs, {args.rounds} interleaved rounds, load "
        f"{report['host']['load_avg_1m']})",
        ["kernels", "threads", *files, "edgekd/mlperf"],
        rows,
    )
    if args.op_probe:
        with tempfile.TemporaryDirectory(prefix="edgekd-op-probe-") as tmp:
            probes = op_probe_models(Path(tmp))
            probe_rows = {
                name: [name, f"{describe(path)['mcu_estimate_ms']['cortex-m7-280mhz'] * 1000:.1f}"]
                for name, path in probes.items()
            }
            headers = ["op", "MCU est. µs"]
            for kernels in ("xnnpack", "builtin"):
                for threads in (1, 2):
                    timing = interleaved_latency(probes, None, threads, kernels, args.runs, args.warmup, args.rounds)
                    headers.append(f"{kernels} {threads}t µs")
                    for name in probes:
                        probe_rows[name].append(
                            f"{1000 * timing[name]['median_ms']:.1f} / {1000 * timing[name]['p90_ms']:.1f}"
                        )
            report["op_probe"] = {name: row for name, row in probe_rows.items()}
            print_table("single-op int8 models, median / p90 µs", headers, list(probe_rows.values()))
    if args.per_op:
        report["per_op"] = per_op_table(files, args.runs, args.warmup, args.rounds)
    if args.json:
        write_json(args.json, report_json("lean_int8", report))
    xnn1 = next(r for r in report["latency"] if r["kernels"] == "xnnpack" and r["threads"] == 1)["files"]
    print(f"ratio edgekd/mlperf={xnn1['edgekd']['median_ms'] / xnn1['mlperf']['median_ms']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
