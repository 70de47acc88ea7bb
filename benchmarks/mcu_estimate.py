"""MCU latency estimates against the published MLPerf Tiny ResNet-8 figures: the one board the
estimate is fitted on, the boards it is only checked against, and the error of each.

    python benchmarks/mcu_estimate.py [--model PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgekd.cli import OneLineParser
from edgekd.errors import EdgekdError
from edgekd.mcu.estimate import estimate_ms, fit_conv_cycles
from edgekd.mcu.profiles import CONV_CYCLES_PER_MAC, MLPERF_TINY_RESNET8, MLPERF_TINY_RESNET8_MACS, PROFILES
from edgekd.tflite_file import read_tflite

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlperf-tiny" / "resnet8_quant.tflite"


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT, help="the MLPerf Tiny ResNet-8 int8 reference")
    args = parser.parse_args()
    fit = next(r for r in MLPERF_TINY_RESNET8 if r.role == "fit")
    try:
        model = read_tflite(args.model)
        refit = fit_conv_cycles(model, fit)
    except EdgekdError as exc:  # a missing, foreign or truncated file, a model without CONV_2D: one line
        print(f"mcu_estimate: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.model.name}: {model.total_macs:,} MACs from the file's ops (MLPerf states {MLPERF_TINY_RESNET8_MACS:,})"
    )
    print(f"CONV_2D cycles/MAC on Cortex-M7: table {CONV_CYCLES_PER_MAC:.4f}, refit on {fit.board} now {refit:.4f}")
    print(
        f"{'board':<11} {'profile':<18} {'role':<6} {'published ms':>13} {'estimate ms':>12} {'error vs mid':>13}  in "
        "range"
    )
    for ref in MLPERF_TINY_RESNET8:
        est = estimate_ms(model, PROFILES.get(ref.profile))
        inside = ref.low_ms <= est <= ref.high_ms
        print(
            f"{ref.board:<11} {ref.profile:<18} {ref.role:<6} {ref.low_ms:>6.0f}–{ref.high_ms:<6.0f} {est:>12.1f} "
            f"{100 * (est / ref.mid_ms - 1):>+12.1f}%  {'yes' if inside else 'no'}"
        )
    print("fit: the one board the Cortex-M7 CONV_2D coefficient is set from; check: not used by the fit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
