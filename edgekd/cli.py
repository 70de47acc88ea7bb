"""The ``edgekd`` command: a thin argparse layer, each verb one call into the library.

This module imports nothing heavy at load time: ``edgekd bench --device rpi`` runs on a Raspberry
Pi that has only numpy and the TFLite runtime. Errors the user can fix (:class:`EdgekdError`) are
printed as one line, without a traceback, and exit with status 2 (bad input); an error that reports
a failed step of valid work (parity out of bounds, a diverged training run) carries ``exit_code`` 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from edgekd import __version__
from edgekd.errors import EdgekdError, one_line

EXIT_USAGE = 2
EXIT_GATE = 1  # a check ran and failed (verify, the bench accuracy floor), as opposed to a usage error
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process ended by it
SHOWN_FAILURES = 5  # files verify names in its stderr line; the rest are counted (all are on stdout)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error form: one ``NAME: error: WHY (see `PROG --help`)`` line
    (no usage block), exit 2. NAME is the program's: the first word of ``prog`` without ``.py``, so
    ``edgekd`` for ``edgekd bench`` (subcommand parsers are made with this class too) and
    ``speed_workers`` for a script's default prog ``speed_workers.py``, as its own checks' lines."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.split()[0].removesuffix(".py")
        self.exit(EXIT_USAGE, f"{name}: error: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _config_keys_epilog() -> str:
    from edgekd.config import METHOD_SECTIONS, describe_keys

    sections = tuple(f"distill.{name}." for name in METHOD_SECTIONS)
    lines = ["config keys (YAML file or --set KEY=VALUE; defaults shown):"]
    pointer = f"  {'distill.<method>.*':<26} {'':<12} a method's own keys: listed under it in KD methods above"
    for key, default, help_text in describe_keys():
        if not key.startswith(sections):
            lines.append(f"  {key:<26} {default:<12} {help_text}")
        elif pointer not in lines:  # the sections' keys are listed under their methods
            lines.append(pointer)
    return "\n".join(lines)


# The modules that register KD methods (edgekd.train.methods.METHODS's providers): their
# docstrings are read from source, since `--help` must not import torch (a Raspberry Pi runs this
# CLI). tests/test_cli.py checks that every registered method is listed.
METHOD_MODULES = ("edgekd.train.methods", "edgekd.train.fitnets", "edgekd.train.logit_methods")


def methods_help() -> str:
    """The KD methods for `distill --help`, one entry per registered method (its docstring), with
    the keys of its config section (``config_section``: their defaults and help from the schema)."""
    import textwrap

    from edgekd.config import DistillConfig, describe_keys
    from edgekd.registry import documented_entries

    lines = [
        "KD methods (distill.method; `edgekd methods` lists them). Every method reads distill.method,",
        "temperature, alpha, baseline and select; the keys listed under a method are read by it alone:",
    ]
    for entry in documented_entries("METHODS", METHOD_MODULES, ("config_section",)):
        wrapped = textwrap.wrap(entry.doc, 84) or [""]
        lines.append(f"  {entry.name:<11} {wrapped[0]}")
        lines += [" " * 14 + more for more in wrapped[1:]]
        section = entry.attributes.get("config_section")
        if section:
            for key, default, help_text in describe_keys(getattr(DistillConfig(), section), f"distill.{section}."):
                text = textwrap.wrap(f"{key} = {default}: {help_text}", 84, subsequent_indent="    ")
                lines += [" " * 14 + part for part in text]
    return "\n".join(lines) + "\n\n" + SEGMENTATION_HELP


SEGMENTATION_HELP = """\
Segmentation (binary masks): data.name=shapes (generated, no download) or segfolder
(root/{train,test}[,val]/images/<stem>.png|jpg + masks/<stem>.png, nonzero = foreground);
U-Net teacher and student (unet_small, unet_tiny; input sides divisible by 2^depth);
distill.method=kd_sigmoid, teacher and baseline trained with per-pixel bce. Crops and flips move
each mask with its image. Models are selected on val mean IoU (the VOC definition: mean of the
foreground and background IoU over every pixel of the split); summary.json holds val_iou/test_iou,
fg IoU as val_fg_iou/test_fg_iou, and pixel accuracy as val_acc/test_acc.
Recipe: edgekd distill --config configs/shapes-seg.yaml"""


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train (or load) the teacher, distill the student, train the no-KD baseline",
        description=(
            "Train the teacher (or load teacher.checkpoint), train the student with the configured KD\n"
            "method, and, with distill.baseline, the same student without KD under the identical recipe.\n"
            "Writes DIR/{config.yaml, summary.json, metrics.jsonl, teacher.pt, student.pt, baseline.pt}.\n\n"
            + methods_help()
            + "\n\nModels: see `edgekd models`. Temperature sweeps: `edgekd sweep`."
        ),
        epilog=_config_keys_epilog() + "\n\nexamples:\n  edgekd distill --config configs/digits.yaml --out runs/digits"
        "\n  edgekd distill --config configs/cifar10-cpu.yaml --set distill.temperature=8 --set student.epochs=5"
        "\n  edgekd distill --out runs/digits --resume"
        "\n  edgekd distill --set distill.method=takd --set 'distill.takd.assistants=[plain6]'"
        " --set teacher.arch=plain10"
        "\n  edgekd distill --set distill.method=domain --set source.name=digits --set data.shift=invert"
        "\n  edgekd distill --config configs/shapes-seg.yaml --out runs/shapes-seg      # segmentation",
        formatter_class=_Formatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults, digits)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoints")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the edgekd run in --out (once every check has passed)"
    )
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from edgekd.train.run import distill

    distill(config=args.config, out=args.out, set=args.set, resume=args.resume, overwrite=args.overwrite)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from edgekd.config import describe_keys

    keys = "\n".join(f"  {k:<28} {d:<12} {h}" for k, d, h in describe_keys() if k.startswith("export."))
    p = sub.add_parser(
        "export",
        help="convert a distill run to ONNX/TFLite (fp32, int8), check parity, write the artifact bundle",
        description=(
            "Export the run's student (and teacher) to ONNX and TFLite — fp32 and full-integer int8\n"
            "(int8 weights per channel, int8 activations and I/O, calibrated on training images) — check\n"
            "every file against PyTorch on the test split, and write a bundle with eval.npz, the int8\n"
            "model as a C array for TFLite Micro, and a checksummed manifest.json.\n"
            "Exits non-zero when a format is out of its parity bounds (the bundle is still written).\n"
            "Segmentation runs: parity per pixel (max |Δlogit|, pixel agreement of the masks, mean IoU vs\n"
            "PyTorch's masks and vs the true ones; the bounds read as pixel agreement and mIoU drop), and\n"
            "eval.npz holds uint8 masks instead of labels (manifest task: segmentation)."
        ),
        epilog=f"export keys (--set export.KEY=VALUE; defaults shown):\n{keys}\n\nexamples:\n"
        "  edgekd export --run runs/digits --out artifacts/digits\n"
        "  edgekd export --run runs/digits --set export.formats=[onnx,tflite_int8,tflite_fp16]",
        formatter_class=_Formatter,
    )
    p.add_argument("--run", metavar="DIR", help="distill run folder (default: the newest under runs/)")
    p.add_argument(
        "--out", metavar="BUNDLE", help="bundle folder, new, empty or an edgekd bundle (default: artifacts/<run name>)"
    )
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override an export.* key (repeatable)"
    )
    p.add_argument(
        "--allow-parity-failure", action="store_true", default=None, help="exit 0 even if a format is out of bounds"
    )
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from edgekd.exporters.export import export

    export(run=args.run, out=args.out, set=args.set, allow_parity_failure=args.allow_parity_failure)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency, accuracy, size and memory of every model in a bundle: table, JSON, Markdown, plot",
        description=(
            "Verify the bundle's sha256 values, then measure each model file (student and teacher;\n"
            "PyTorch, ONNX Runtime, TFLite fp32/int8 where their runtime is installed) in a fresh process:\n"
            "batch-1 latency of invoke alone after a warm-up (min, p50, p90, p99, mean ± std), accuracy on\n"
            'eval.npz (mean IoU for a segmentation bundle: the JSON\'s "accuracy_frac" and "miou_frac"), file size,\n'
            "peak resident memory, MACs and GMAC/s. Rows whose runtime is missing are\n"
            "skipped, rows that fail to load or run are marked failed; the others still run.\n"
            "Writes OUT/bench.json, OUT/bench.md and OUT/bench.png (accuracy vs latency, Pareto front);\n"
            "OUT defaults to BUNDLE/bench/<device> (cpu, rpi-<hostname>, mcu), which `edgekd verify` ignores.\n"
            "A row whose file failed the export's parity check shows PARITY FAILED; an int8 row slower than\n"
            "the same model's fp32 file shows INT8 SLOWER, with the ops the runtime leaves unaccelerated.\n"
            "Exit status: 0 every requested row ran (and met --min-accuracy); 1 some rows failed or are below\n"
            "the floor (one `edgekd: bench: N of M rows failed: …` line names them; the report is still\n"
            "written); 2 bad input (one `edgekd: error:` line, nothing measured).\n\n"
            "Devices: cpu (this machine); rpi (a Raspberry Pi: TFLite with XNNPACK at 1 and 4 threads, board,\n"
            "clocks, temperature and throttling; needs only numpy + ai-edge-litert); mcu (TFLite Micro on this\n"
            "host: op support, tensor arena, accuracy; flash and per-profile latency ESTIMATES; a model TFLite\n"
            "Micro cannot run, or that does not fit --mcu / --flash-kb / --ram-kb, fails its row with the reason\n"
            "and gets no estimate: exit 1 unless --allow-unsupported)."
        ),
        epilog=(
            "examples:\n"
            "  edgekd bench --artifacts artifacts/digits --threads 1 --runs 200\n"
            "  edgekd bench --formats tflite_int8,tflite_fp32 --min-accuracy 0.95 --json bench.json\n"
            "  edgekd bench --artifacts artifacts/digits --full-test      # accuracy on the whole test split\n"
            "  edgekd bench --device rpi --artifacts ~/edgekd/bundles/digits   # on the Pi\n"
            "  edgekd bench --device mcu --mcu cortex-m4-120mhz --artifacts artifacts/digits\n"
            "  edgekd bench --device mcu --emulate cortex-m4 --artifacts artifacts/digits   # on a QEMU Cortex-M4\n"
            "  edgekd bench --device mcu --model resnet8_quant.tflite --json mcu.json"
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("--artifacts", metavar="DIR", help="bundle folder (default: the newest under artifacts/)")
    p.add_argument("--device", default="cpu", help="bench target (default: cpu, this machine)")
    p.add_argument("--threads", type=int, metavar="N", help="runtime threads (default: every usable core)")
    p.add_argument("--runs", type=int, default=100, metavar="N", help="timed runs per model (default 100)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed runs before timing (default 10)")
    p.add_argument("--json", metavar="FILE", help="also write the JSON results to FILE")
    p.add_argument(
        "--min-accuracy",
        type=float,
        metavar="X",
        help="accuracy floor as a fraction (0.95): exit 1 if a row is below it or failed",
    )
    p.add_argument(
        "--out", metavar="DIR", help="report folder (default: BUNDLE/bench/<device>: cpu, rpi-<hostname>, mcu)"
    )
    p.add_argument(
        "--full-test",
        action="store_true",
        help="accuracy on the run's whole test split (needs the dataset and edgekd[train])",
    )
    p.add_argument("--models", metavar="A,B", help="only these models (student, teacher, baseline)")
    p.add_argument("--formats", metavar="A,B", help="only these formats (pytorch, onnx, tflite_fp32, tflite_int8, …)")
    p.add_argument("--model", metavar="FILE", help="bench one model file instead of a bundle (no accuracy)")
    p.add_argument("--force", action="store_true", help="rpi: run the Pi path on a machine that is not a Raspberry Pi")
    p.add_argument(
        "--mcu", metavar="PROFILE", help="mcu: profile whose flash/RAM are the budget (cortex-m7-216mhz, cortex-m4, …)"
    )
    p.add_argument("--flash-kb", type=float, metavar="KB", help="mcu: flash budget in KB (default: the profile's)")
    p.add_argument(
        "--ram-kb", type=float, metavar="KB", help="mcu: RAM budget for the tensor arena in KB (default: the profile's)"
    )
    p.add_argument(
        "--allow-unsupported",
        action="store_true",
        help=(
            "exit 0 although a model cannot run on the device (an op TFLite Micro lacks, over the MCU budget); its row "
            "still fails"
        ),
    )
    p.add_argument(
        "--emulate",
        metavar="CORE",
        help=(
            "mcu: build the app (TFLM + CMSIS-NN) for cortex-m4|m7|m33|m55, run it on QEMU: instructions per op, "
            "outputs bit-exact with the host"
        ),
    )
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgekd.benchmark import bench

    report = bench(
        artifacts=args.artifacts,
        device=args.device,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        json=args.json,
        min_accuracy=args.min_accuracy,
        out=args.out,
        full_test=args.full_test,
        models=args.models,
        formats=args.formats,
        model=args.model,
        force=args.force,
        mcu=args.mcu,
        flash_kb=args.flash_kb,
        ram_kb=args.ram_kb,
        allow_unsupported=args.allow_unsupported,
        emulate=args.emulate,
    )
    failures = report.failures
    if failures:  # the documented failure summary: one line naming every row that did not run or pass
        print(
            f"edgekd: bench: {len(failures)} of {len(report.results)} rows failed: {'; '.join(failures)}",
            file=sys.stderr,
        )
    return 0 if report.passed else EXIT_GATE


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="copy a bundle to a Raspberry Pi over ssh, install the Pi side if missing, bench it there",
        description=(
            "Verify the bundle, copy it and the edgekd sources to HOST (rsync, scp where rsync is missing),\n"
            "create REMOTE_DIR/venv with numpy + ai-edge-litert (deploy/rpi/install.sh) unless the Pi side is\n"
            "already there, and with --bench run `edgekd bench --device rpi` on the Pi and copy bench.json and\n"
            "bench.md back to OUT (default BUNDLE/bench/<host>). Needs key-based ssh login (no password prompt).\n"
            "Every ssh/scp/rsync step is stopped after --timeout seconds, the remote install and bench after\n"
            "--bench-timeout, each with one line naming the step."
        ),
        epilog="examples:\n  edgekd deploy --host pi@raspberrypi.local --artifacts artifacts/digits --bench"
        "\n  edgekd deploy --host pi@10.0.0.7 --port 2222 --identity ~/.ssh/pi_ed25519 --bench --threads 4",
        formatter_class=_Formatter,
    )
    p.add_argument("--host", required=True, metavar="[USER@]HOST", help="the Pi to deploy to (its port: --port)")
    p.add_argument("--artifacts", metavar="DIR", help="bundle folder (default: the newest under artifacts/)")
    p.add_argument("--bench", action="store_true", help="run the bench on the Pi and bring bench.json back")
    p.add_argument("--force", action="store_true", help="pass --force to the remote bench (a host that is not a Pi)")
    p.add_argument(
        "--remote-dir",
        default="edgekd",
        metavar="DIR",
        help="deploy's own folder on the Pi: new, empty or marked (.edgekd-deploy) by an earlier deploy; deploy "
        "replaces src/ and bundles/<name>/ in it (default: edgekd in the remote home)",
    )
    p.add_argument(
        "--remote-python",
        metavar="PATH",
        help="existing Python on the Pi with numpy + a TFLite runtime (default: REMOTE_DIR/venv, installed if missing)",
    )
    p.add_argument("--port", type=int, metavar="N", help="ssh port")
    p.add_argument("--identity", metavar="FILE", help="ssh private key")
    p.add_argument(
        "--ssh-option", metavar="KEY=VALUE", action="append", default=[], help="extra ssh -o option (repeatable)"
    )
    p.add_argument("--threads", type=int, metavar="N", help="remote bench threads (default: 1 and 4)")
    p.add_argument("--runs", type=int, default=100, metavar="N", help="timed runs per model (default 100)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed runs before timing (default 10)")
    p.add_argument("--out", metavar="DIR", help="where bench.json comes back to (default: BUNDLE/bench/<host>)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="limit on each ssh/scp/rsync step in seconds (default: deploy.timeout_s, 300)",
    )
    p.add_argument(
        "--bench-timeout",
        type=float,
        metavar="S",
        help="limit on the remote install and bench in seconds (default: deploy.bench_timeout_s, 3600)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file whose deploy: section sets deploy.timeout_s / deploy.bench_timeout_s",
    )
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override a deploy.* key (repeatable)"
    )
    p.set_defaults(func=_cmd_deploy)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from edgekd.deploy import deploy

    result = deploy(
        host=args.host,
        artifacts=args.artifacts,
        bench=args.bench,
        force=args.force,
        remote_dir=args.remote_dir,
        remote_python=args.remote_python,
        port=args.port,
        identity=args.identity,
        ssh_option=args.ssh_option,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        out=args.out,
        timeout=args.timeout,
        bench_timeout=args.bench_timeout,
        config=args.config,
        set=args.set,
    )
    print(
        f"deployed to {result.host}:{result.remote_bundle} "
        f"({result.transport}{', Pi side installed' if result.installed else ''})"
    )
    if result.bench_json is not None:
        print(f"bench report: {result.bench_json}")
    return 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check every file of a bundle against its manifest's sha256",
        description=(
            "Check presence, size and sha256 of every file a bundle's manifest lists; exit 1 naming the bad file."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from edgekd.bundle import verify_bundle

    result = verify_bundle(args.bundle)
    for line in result.bad:
        print(f"FAILED  {line}")
    print(f"{args.bundle}: {len(result.ok)} files ok" + (f", {len(result.bad)} bad" if result.bad else ""))
    if not result.passed:  # named on stderr too, as bench's failed rows are: scripts read that stream
        total = len(result.ok) + len(result.bad)
        named = "; ".join(result.bad[:SHOWN_FAILURES])  # one line stays one line: a few named, then a count
        more = f"; … and {len(result.bad) - SHOWN_FAILURES} more" if len(result.bad) > SHOWN_FAILURES else ""
        print(f"edgekd: verify: {len(result.bad)} of {total} files failed: {named}{more}", file=sys.stderr)
    return 0 if result.passed else EXIT_GATE


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run a bundle's model on image files: top-k classes (table, JSON) or mask PNGs",
        description=(
            "Run the bundle's student (int8 TFLite by default) on images: files, folders (their image\n"
            "files, recursively) and glob patterns. Every preprocessing step comes from the bundle: the\n"
            "image is converted to the model's channels, resized (bilinear) to its input size, and fed as\n"
            "raw pixels (normalization is in the model; int8 input quantized with the tensor's own scale).\n"
            "Classification: a table of the top-k classes with softmax scores. Segmentation: one\n"
            "<stem>_mask.png (0/255, at the image's own size) per image in --masks (a new or empty folder).\n"
            "Runs on a Raspberry Pi with edgekd[rpi] (numpy, ai-edge-litert, Pillow). Exits 1 naming the\n"
            "images that could not be read (the others still run), 2 when none could."
        ),
        epilog="examples:\n  edgekd predict --artifacts artifacts/digits photo.png"
        "\n  edgekd predict --artifacts artifacts/cifar10 images/ --top-k 3 --json predictions.json"
        "\n  edgekd predict --artifacts artifacts/cifar10 'shots/*.jpg' --format tflite_fp32"
        "\n  edgekd predict --artifacts artifacts/shapes-seg scans/ --masks out/masks",
        formatter_class=_Formatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    p.add_argument("--artifacts", metavar="DIR", help="bundle folder (default: the newest under artifacts/)")
    p.add_argument(
        "--format", default="tflite_int8", help="which model file: tflite_int8 (default), tflite_fp32, onnx, pytorch, …"
    )
    p.add_argument("--model", default="student", help="student (default), teacher or baseline")
    p.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="classes shown per image (default 5; at most the model's classes); classification bundles only",
    )
    p.add_argument("--threads", type=int, metavar="N", help="runtime threads (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the predictions as JSON to FILE")
    p.add_argument("--masks", metavar="DIR", help="segmentation only: folder for the mask PNGs (default masks/)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from edgekd.predict import predict

    report = predict(
        artifacts=args.artifacts,
        images=args.images,
        format=args.format,
        model=args.model,
        top_k=args.top_k,
        threads=args.threads,
        json=args.json,
        masks=args.masks,
    )
    for line in report.failed:
        print(f"edgekd: predict: FAILED {line}", file=sys.stderr)
    return 0 if report.passed else EXIT_GATE


def _floats(text: str) -> list[float]:
    parts = text.split(",")
    if parts[-1].strip() == "" and len(parts) > 1:
        parts.pop()  # a trailing comma, as in a copied list
    if not any(v.strip() for v in parts):
        raise argparse.ArgumentTypeError("expected at least one number")
    try:  # an empty entry ("2,,4") is an error too: a number was meant there
        return [float(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="temperature (and α) sweep with one shared teacher; the winner is chosen on val",
        description=(
            "Train the teacher once (DIR/teacher/), then one distill run per grid point (DIR/T<T>_a<α>/)\n"
            "that loads it. The winner is the point with the highest student VAL accuracy (test is only\n"
            "reported). Writes DIR/sweep.json (every point, the winner), DIR/sweep.png (val accuracy vs T)\n"
            "and DIR/best.yaml (the winner's config, reproducing it with the shared teacher).\n"
            "Config keys: as for `edgekd distill` (see `edgekd distill --help`)."
        ),
        epilog="examples:\n  edgekd sweep --config configs/digits.yaml --out runs/digits-sweep"
        "\n  edgekd sweep --config configs/digits.yaml --out runs/sweep --temperatures 2,4,8 --alphas 0.5,0.9",
        formatter_class=_Formatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults, digits)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/<config name>-sweep)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key (repeatable)")
    p.add_argument(
        "--temperatures",
        type=_floats,
        default=[1.0, 2.0, 4.0, 8.0, 16.0],
        metavar="T,…",
        help="temperatures (default 1,2,4,8,16)",
    )
    p.add_argument(
        "--alphas", type=_floats, default=None, metavar="A,…", help="α values (default: the config's distill.alpha)"
    )
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out (finished points are kept)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --out")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from edgekd.train.sweep import sweep

    sweep(
        config=args.config,
        out=args.out,
        set=args.set,
        temperatures=args.temperatures,
        alphas=args.alphas,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="the most accurate student that fits a device budget (Optuna; one machine or many)",
        description=(
            "Train (or load) the teacher once, then search student families (width, depth, input\n"
            "resolution) for the highest val accuracy inside --budget. Every candidate is measured before\n"
            "training (params, MACs, and the int8 TFLite model of the untrained network for flash, TFLite Micro\n"
            "arena and latency); over-budget candidates never train. The others get short KD trials (shared\n"
            "cached teacher outputs; Optuna's pruner stops weak ones on val accuracy); the best few get the\n"
            "config's full recipe and the winner is DIR/best, a normal run folder (edgekd export --run DIR/best).\n"
            "Writes DIR/pareto.{json,md,png}: every trial's figures and the Pareto front.\n"
            "The study lives in DIR/study.db (SQLite; a rerun continues it) or --storage (PostgreSQL: run\n"
            "`edgekd search --worker --storage URL` on other machines to share the trials).\n\n"
            "budget keys (any subset, comma-separated KEY=VALUE):\n"
            "  flash_kb     int8 model + TFLite Micro runtime estimate, KB (as edgekd bench --device mcu)\n"
            "  model_kb     the int8 .tflite alone, KB (MLPerf Tiny: ≤ 100 KB int8)\n"
            "  ram_kb       TFLite Micro tensor arena, KB\n"
            "  device       MCU profile (cortex-m7-216mhz, cortex-m4-120mhz, …): default flash_kb/ram_kb\n"
            "  latency_ms   MCU latency ESTIMATE on device, ms\n"
            "  host_ms      int8 TFLite latency measured on this host (1 thread, median), ms\n"
            "  rpi_ms       Raspberry Pi latency ESTIMATE, ms: host_ms × the Pi/host ratio of the model\n"
            "               benched in --rpi-bench FILE (a bench.json of `edgekd bench --device rpi`)\n"
            "  macs         multiply-accumulates per inference (12.5M)\n"
            "  params       parameters (100k)\n\n"
            "space YAML (--space; default: plain2-6, resnet8/14/20, mobilenetv2_small × widths .25/.5/1):\n"
            "  resolution: [32, 24]\n"
            "  families:\n"
            "    plain: {archs: [plain2, plain3, plain4], width: [0.25, 0.5, 1.0]}"
        ),
        epilog=(
            "examples:\n"
            "  edgekd search --config configs/digits.yaml --budget flash_kb=64,device=cortex-m4 --trials 12 "
            "--out runs/search\n"
            "  edgekd search --config configs/cifar10-cpu.yaml --budget flash_kb=100,device=cortex-m4-120mhz "
            "--out runs/search-c10\n"
            "  # the main process, then each other machine:\n"
            "  edgekd search --storage postgresql://user@db/edgekd --config C --budget … --out runs/search\n"
            "  edgekd search --worker --storage postgresql://user@db/edgekd --out runs/search-worker\n"
            "  edgekd export --run runs/search/best"
        ),
        formatter_class=_Formatter,
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config: data, teacher, KD method, full student recipe (default: built-in defaults)",
    )
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key (repeatable)")
    p.add_argument(
        "--budget",
        metavar="K=V,…",
        help="device budget, e.g. flash_kb=256,ram_kb=128,device=cortex-m7-216mhz,latency_ms=50",
    )
    p.add_argument("--space", metavar="FILE", help="search space YAML (default: the registry's student families)")
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials to train (over-budget candidates do not count; default 12; workers follow the study's count)",
    )
    p.add_argument(
        "--trial-epochs", type=int, metavar="N", help="epochs of a trial (default: a fifth of student.epochs)"
    )
    p.add_argument(
        "--finalists",
        type=int,
        default=3,
        metavar="K",
        help="best candidates retrained with the full recipe (default 3)",
    )
    p.add_argument("--out", metavar="DIR", help="search folder (default: runs/search; a worker's: runs/search-worker)")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage (default: sqlite:///DIR/study.db), e.g. postgresql://user:pw@host/db",
    )
    p.add_argument(
        "--study-name", default="edgekd-search", metavar="NAME", help="study in the storage (default edgekd-search)"
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="join the study in --storage and run trials only (config, budget and space come from it)",
    )
    p.add_argument(
        "--teacher",
        metavar="FILE",
        help="teacher checkpoint (main: load instead of training; worker: this machine's copy)",
    )
    p.add_argument(
        "--pruner",
        choices=["median", "hyperband", "none"],
        help="Optuna pruner on per-epoch val accuracy (default median; a worker: the study's)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="seconds between trial heartbeats; a trial silent for 3 beats is failed and retried (default 30)",
    )
    p.add_argument(
        "--rpi-bench",
        metavar="FILE",
        help="bench.json of `edgekd bench --device rpi` (BUNDLE/bench/<pi>/): calibrates the rpi_ms budget key",
    )
    p.add_argument(
        "--wait",
        type=int,
        default=0,
        metavar="S",
        help=(
            "worker: wait up to S seconds for the main search to start the study, or to ask for more trials (default 0)"
        ),
    )
    p.set_defaults(func=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from edgekd.search import search

    result = search(
        config=args.config,
        out=args.out,
        set=args.set,
        budget=args.budget,
        space=args.space,
        trials=args.trials,
        trial_epochs=args.trial_epochs,
        finalists=args.finalists,
        storage=args.storage,
        study_name=args.study_name,
        worker=args.worker,
        teacher=args.teacher,
        pruner=args.pruner,
        heartbeat_s=args.heartbeat,
        wait_s=args.wait,
        rpi_bench=args.rpi_bench,
    )
    if args.worker:
        print(f"worker {result['worker']}: ran trials {', '.join(map(str, result['trials'])) or 'none'}")
        return 0
    if result["failed_trials"]:
        print(
            f"edgekd: search: trials failed and not retried: {', '.join(map(str, result['failed_trials']))}",
            file=sys.stderr,
        )
        return EXIT_GATE
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with parameters and MACs", formatter_class=_Formatter)
    p.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'resnet*'")
    p.add_argument(
        "--input", default="3x32x32", metavar="CxHxW", help="input shape for the MAC count (default 3x32x32)"
    )
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from edgekd.errors import first_line
    from edgekd.limits import MAX_IMAGE_SIDE, check_number
    from edgekd.models import MODELS, count_macs, count_params, create_model, model_task
    from edgekd.ui import print_table

    try:
        c, h, w = (int(v) for v in args.input.lower().split("x"))
    except ValueError:
        raise EdgekdError(f"--input must look like 3x32x32, got {args.input!r}") from None
    # the MAC count builds each model at this size: a huge input would allocate gigabytes
    for flag, value, high in (
        ("--input channels", c, 64),
        ("--input height", h, MAX_IMAGE_SIDE),
        ("--input width", w, MAX_IMAGE_SIDE),
        ("--classes", args.classes, 100_000),
    ):
        check_number(flag, value, integer=True, low=1, high=high)
    rows = []
    for name in MODELS.names(args.pattern):
        # the docstring's first paragraph on one line (a long summary may wrap in the source)
        doc = " ".join((MODELS.get(name).__doc__ or "").strip().split("\n\n")[0].split())
        try:
            # built on the meta device (shapes, no storage): a plain net's classifier grows with the
            # input, gigabytes of weights at 4096x4096 that a MAC count never needs to hold
            with torch.device("meta"):
                model = create_model(name, args.classes, c, (h, w))
            macs = count_macs(model, (1, c, h, w))
        except (EdgekdError, RuntimeError) as exc:
            # a U-Net whose poolings do not divide this input, a net whose kernels outgrow it (airbench at
            # 1x1: torch's RuntimeError): listed, not fatal
            why = first_line(exc, 400)  # whole: cut at 160 it ended mid-word
            rows.append([name, model_task(name), "—", "—", f"{doc} (not at {args.input}: {why})"])
            continue
        rows.append([name, model_task(name), count_params(model), macs, doc])
    if not rows:
        raise EdgekdError(f"no model matches {args.pattern!r}; available: {', '.join(MODELS.names())}")
    print_table(
        f"models at {c}x{h}x{w}, {args.classes} classes", ["model", "task", "params", "MACs", "description"], rows
    )
    return 0


def _registry_table(registry, title: str, column: str) -> int:
    """Print a registry's names with the first paragraph of each entry's docstring."""
    from edgekd.ui import print_table

    rows = [[n, " ".join((registry.get(n).__doc__ or "").split())] for n in registry.names()]
    print_table(title, [column, "description"], rows)
    return 0


def _add_methods(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the KD methods (distill.method)", formatter_class=_Formatter)
    p.set_defaults(func=_cmd_methods)


def _cmd_methods(args: argparse.Namespace) -> int:
    from edgekd.train.methods import METHODS

    return _registry_table(METHODS, "KD methods (distill.method)", "method")


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the data sources (data.name)", formatter_class=_Formatter)
    p.set_defaults(func=_cmd_datasets)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from edgekd.data.sources import DATASETS

    return _registry_table(DATASETS, "data sources", "data.name")


def _add_mcu(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mcu",
        help="build the microcontroller app (TFLite Micro + CMSIS-NN) for a Cortex-M core; run it on QEMU",
        description=(
            "mcu build: build deploy/mcu/main.cc for a bundle's int8 model (or one .tflite) against TFLite Micro +\n"
            "CMSIS-NN for a Cortex-M core, as a bare-metal ELF for that core's QEMU board (cortex-m4: mps2-an386,\n"
            "cortex-m7: mps2-an500, cortex-m33: mps2-an505, cortex-m55: mps3-an547). Only the kernels the model\n"
            "needs are compiled (--kernels all: every kernel); each object file is cached under ~/.cache/edgekd/mcu\n"
            "($EDGEKD_CACHE), so a second build takes seconds. Prints flash and RAM from the linker map next to the\n"
            "host estimate; writes OUT/app.elf, app.map, the config header and build.json. With --run, runs the ELF\n"
            "on the board (-icount: instruction counts per operator) and checks every int8 output value against the\n"
            "TFLite Micro interpreter on the host: exit 1 when any differs. Needs the Arm toolchain and QEMU:\n"
            "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
        ),
        epilog=(
            "examples:\n"
            "  edgekd mcu build --artifacts artifacts/digits --core cortex-m4 --run\n"
            "  edgekd mcu build --model resnet8_quant.tflite --core cortex-m7 --out build/resnet8-m7 --run\n"
            "  edgekd mcu build --artifacts artifacts/digits --core cortex-m55 --tflm ~/src/tflite-micro"
        ),
        formatter_class=_Formatter,
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    b = actions.add_parser(
        "build",
        help="build (and with --run, emulate) the app for one model and core",
        description=p.description,
        epilog=p.epilog,
        formatter_class=_Formatter,
    )
    b.add_argument("--artifacts", metavar="DIR", help="bundle folder: its student_int8.tflite and eval.npz")
    b.add_argument("--model", metavar="FILE", help="one int8 .tflite instead of a bundle (random sample images)")
    b.add_argument(
        "--role", default="student", help="bundle model to build (student, teacher, baseline; default student)"
    )
    b.add_argument(
        "--core", default="cortex-m4", help="cortex-m4 | cortex-m7 | cortex-m33 | cortex-m55 (default cortex-m4)"
    )
    b.add_argument("--out", metavar="DIR", help="build folder (default: BUNDLE/mcu/CORE; required with --model)")
    b.add_argument(
        "--tflm",
        metavar="DIR",
        help=(
            "a tflite-micro checkout or a folder of its source archives (default: $EDGEKD_THIRD_PARTY or "
            "../shared/third_party)"
        ),
    )
    b.add_argument(
        "--kernels",
        default="model",
        help="model: only the kernels the model needs (default); all: every TFLM and CMSIS-NN kernel",
    )
    b.add_argument(
        "--samples", type=int, default=4, metavar="N", help="eval images embedded for the self-test (default 4)"
    )
    b.add_argument(
        "--run", action="store_true", help="run on the core's QEMU board and compare the outputs with the host's"
    )
    b.add_argument("--jobs", type=int, metavar="N", help="parallel compiler processes (default: every core)")
    b.set_defaults(func=_cmd_mcu_build)
    p.set_defaults(func=lambda args: _no_choice(p, "an action"))


def _cmd_mcu_build(args: argparse.Namespace) -> int:
    from edgekd.mcu.app import mcu_build, summary_lines

    info = mcu_build(
        model=args.model,
        artifacts=args.artifacts,
        core=args.core,
        out=args.out,
        tflm=args.tflm,
        kernels=args.kernels,
        samples=args.samples,
        run=args.run,
        role=args.role,
        jobs=args.jobs,
    )
    for line in summary_lines(info):
        print(line)
    if args.run and not info.get("bit_exact"):
        print(
            f"edgekd: mcu build: {args.core}: {'; '.join(info.get('problems') or ['outputs differ from the host'])}",
            file=sys.stderr,
        )
        return EXIT_GATE
    return 0


VERBS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_distill,
    _add_sweep,
    _add_search,
    _add_export,
    _add_bench,
    _add_mcu,
    _add_deploy,
    _add_predict,
    _add_verify,
    _add_models,
    _add_methods,
    _add_datasets,
]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="edgekd",
        description=(
            "Distill a vision model from a big teacher into a small student, export it to ONNX and\n"
            "TFLite (fp32 and full-integer int8), and benchmark it on the host, a Raspberry Pi or an MCU.\n\n"
            "Typical flow:\n"
            "  edgekd distill --config configs/digits.yaml --out runs/digits\n"
            "  edgekd export --run runs/digits --out artifacts/digits\n"
            "  edgekd verify artifacts/digits\n"
            "  edgekd bench --artifacts artifacts/digits\n"
            "  edgekd deploy --host pi@raspberrypi.local --bench      # on a Raspberry Pi\n"
            "  edgekd predict --artifacts artifacts/digits image.png  # the model on your images\n"
            "  edgekd bench --device mcu --mcu cortex-m4              # microcontroller fit and estimates"
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"edgekd {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in VERBS:
        add(sub)
    return parser


def _no_choice(parser: argparse.ArgumentParser, what: str) -> int:
    """``edgekd`` without a command, ``edgekd mcu`` without an action: the help on stdout, and on
    stderr the one error line that any other bad input gets (the help alone said nothing there)."""
    parser.print_help()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    print(f"edgekd: error: give {what}: {', '.join(subparsers.choices)} (see `{parser.prog} --help`)", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _no_choice(parser, "a command")
    from edgekd.ui import set_quiet

    set_quiet(args.quiet)
    from edgekd.procs import Terminated, terminate_raises

    try:
        with terminate_raises():  # SIGTERM unwinds like Ctrl-C: child processes killed, temp files removed
            return int(args.func(args) or 0)
    except EdgekdError as exc:
        # one line whatever the message carries (a file name with a newline, a tool's colors)
        print(f"edgekd: error: {one_line(str(exc))}", file=sys.stderr)
        # 2: bad input; an error that says a step of valid work failed carries its own (1)
        return getattr(exc, "exit_code", EXIT_USAGE)
    except OSError as exc:  # the file system refused (read-only place, disk full, permission)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edgekd: error: {one_line(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edgekd: interrupted (a training run continues with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("edgekd: stopped by SIGTERM (a training run continues with --resume)", file=sys.stderr)
        return EXIT_TERMINATED
