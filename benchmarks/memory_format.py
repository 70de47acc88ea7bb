"""NCHW vs channels-last (NHWC) on this machine, side by side in one run: training and inference
throughput of registry models, fp32, the way edgekd runs them (``runtime.channels_last``).

For each model: a training step (forward, cross-entropy, backward, SGD with momentum) and an
inference forward (``torch.inference_mode``) on a random batch, each timed for ``--seconds`` after
two warm-up steps, in NCHW and in channels-last (weights and batch), alternated ``--repeats``
times; medians are reported. Prints one row per model and mode, then ``ratio`` lines
(channels-last / NCHW). Random inputs: speed, not accuracy, is measured.

    python benchmarks/memory_format.py
    python benchmarks/memory_format.py --models resnet8,airbench --threads 2 --json mf.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# name → (registry arch, kwargs, channels, size, classes): the recipes' models at their data's size
MODELS = {
    "resnet8": ("resnet8", {}, 3, 32, 10),
    "mobilenetv2_small": ("mobilenetv2_small", {}, 3, 32, 10),
    "mobilenetv3_small": ("mobilenetv3_small", {}, 3, 32, 10),
    "airbench_half": ("airbench", {"widths": [32, 128, 128]}, 3, 32, 10),
    "airbench": ("airbench", {}, 3, 32, 10),
    "resnet20_digits": ("resnet20", {}, 1, 8, 10),
    "plain2_digits": ("plain2", {}, 1, 8, 10),
    "unet_tiny": ("unet_tiny", {}, 3, 64, 3),
}
DEFAULT = "resnet8,mobilenetv2_small,mobilenetv3_small,airbench_half,airbench,resnet20_digits,unet_tiny"
KINDS = ("train", "infer")
FORMATS = ("nchw", "channels_last")


def measure(name: str, kind: str, fmt: str, batch: int, seconds: float) -> float:
    """Images per second of one model, step kind and memory format."""
    import torch
    import torch.nn.functional as F

    from edgekd.models import create_model

    arch, kwargs, c, size, classes = MODELS[name]
    torch.manual_seed(0)
    model = create_model(arch, classes, c, (size, size), **kwargs)
    x = torch.randn(batch, c, size, size)
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    model.train(kind == "train")

    def step() -> None:
        if kind == "train":
            out = model(x)
            # class logits, or per-pixel logits for segmentation: a scalar loss either way
            loss = F.cross_entropy(out, torch.zeros(out.shape[0], *out.shape[2:], dtype=torch.long))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(x)

    for _ in range(2):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    p = OneLineParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT, help=f"comma-separated, from: {', '.join(MODELS)}")
    p.add_argument("--batch", type=int, default=128, help="images per step")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per (model, step, format)")
    p.add_argument("--repeats", type=int, default=2, help="alternate the formats this many times; medians")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    from edgekd.errors import EdgekdError
    from edgekd.limits import check_threads, out_of_range
    from edgekd.outputs import check_report_json, report_json
    from edgekd.registry import unknown_name_message

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    problems = [unknown_name_message("model", m, MODELS) for m in names if m not in MODELS]
    problems += [] if names else ["--models names no model"]
    problems += out_of_range(args, at_least={"batch": 1, "repeats": 1}, positive=("seconds",))
    for check in (
        lambda: check_threads("--threads", args.threads, os.cpu_count()),
        lambda: check_report_json(args.json, "memory_format"),
    ):
        try:
            check()
        except EdgekdError as exc:
            problems.append(str(exc))
    if problems:
        print(f"memory_format: error: {problems[0]}", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    runs: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for name in names:
            for kind in KINDS:
                for fmt in FORMATS if r % 2 == 0 else FORMATS[::-1]:  # alternate which goes first
                    value = measure(name, kind, fmt, args.batch, args.seconds)
                    runs.setdefault(f"{name}|{kind}|{fmt}", []).append(value)
                    print(
                        f"[{r + 1}/{args.repeats}] {name:<18} {kind:<5} {fmt:<13} {value:9.1f} img/s", file=sys.stderr
                    )
    best = {key: statistics.median(values) for key, values in runs.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, fp32")
    print("| model | step | NCHW img/s | channels-last img/s | ratio |\n|---|---|---:|---:|---:|")
    ratios = {}
    for name in names:
        for kind in KINDS:
            nchw, nhwc = best[f"{name}|{kind}|nchw"], best[f"{name}|{kind}|channels_last"]
            ratios[f"{name}|{kind}"] = nhwc / nchw
            print(f"| {name} | {kind} | {nchw:.0f} | {nhwc:.0f} | {nhwc / nchw:.2f} |")
    print(" ".join(f"ratio {key.replace('|', '/')}={value:.2f}" for key, value in ratios.items()))
    if args.json:
        from edgekd.atomic import write_json

        report = {"args": vars(args), "img_per_s": best, "ratio_channels_last_over_nchw": ratios}
        write_json(args.json, report_json("memory_format", report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
