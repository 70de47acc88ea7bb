"""TFLite Micro + CMSIS-NN on emulated Cortex-M boards: for the MLPerf Tiny ResNet-8 (and a bundle's
int8 student with --artifacts), per core: ELF flash/RAM from the linker map, instructions per
inference (QEMU -icount), the top operators by instruction share, the instruction-based latency
estimate (edgekd.mcu.cpi, TFLM + CMSIS-NN) next to the per-MAC estimate (edgekd.mcu.estimate,
fitted on the fastest published submissions) and the published range.

    python benchmarks/mcu_emulate.py                                  # ResNet-8 on M4 and M7
    python benchmarks/mcu_emulate.py --cores cortex-m4,cortex-m7,cortex-m33,cortex-m55 --artifacts artifacts/digits

The first build per core compiles TFLM (minutes; cached in ~/.cache/edgekd/mcu), later ones take seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgekd.cli import OneLineParser  # noqa: E402 - after the sys.path insert
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.mcu import app, cpi, estimate, profiles  # noqa: E402
from edgekd.outputs import check_report_json, report_json  # noqa: E402
from edgekd.registry import unknown_name_message  # noqa: E402
from edgekd.tflite_file import read_tflite  # noqa: E402

RESNET8 = REPO.parent / "shared" / "data" / "mlperf-tiny" / "resnet8_quant.tflite"
CLOCK = {
    "cortex-m4": "cortex-m4-120mhz",
    "cortex-m7": "cortex-m7-216mhz",
    "cortex-m33": "cortex-m33-160mhz",
    "cortex-m55": "cortex-m55-160mhz",
}


def row(name: str, info: dict, model_path: Path) -> list[str]:
    core = info["core"]
    prof = profiles.PROFILES.get(CLOCK[core])
    emu = info["emulated"]
    ms = cpi.ms_from_instructions(emu["instructions"], core, prof.mhz)
    per_mac = estimate.estimate_ms(read_tflite(model_path), prof)
    top = ", ".join(f"{r['op']} {100 * r['share']:.0f} %" for r in emu["per_op"][:3])
    return [
        name,
        core,
        f"{info['flash_bytes'] / 1024:,.1f}",
        f"{info['ram_bytes'] / 1024:,.1f}",
        f"{emu['instructions'] / 1e6:,.2f} M",
        "yes" if info["bit_exact"] else "NO",
        top,
        f"{ms:,.1f} @ {prof.mhz:g} MHz",
        f"{per_mac:,.1f}",
    ]


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", default="cortex-m4,cortex-m7")
    p.add_argument("--artifacts", help="also an edgekd bundle's int8 student")
    p.add_argument("--json", help="write the rows as JSON")
    args = p.parse_args()
    try:
        return emulate(args)
    except EdgekdError as exc:  # an unknown core, a missing model or bundle, no toolchain: one line
        print(f"mcu_emulate: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", None) or 2


def emulate(args: argparse.Namespace) -> int:
    """Every input checked before the first (minutes-long) build, then one build and run per model and core."""
    cores = args.cores.split(",")
    for core in cores:
        if core not in CLOCK:
            raise EdgekdError(unknown_name_message("core", core, CLOCK))
    if args.artifacts:
        app.resolve_model(None, args.artifacts)  # a verified bundle with an int8 student
    check_report_json(args.json, "mcu_emulate")
    if not RESNET8.is_file():
        raise EdgekdError(f"the MLPerf Tiny ResNet-8 is missing: no such file {RESNET8}")
    models = [("ResNet-8 (MLPerf Tiny)", RESNET8, None)]
    if args.artifacts:
        models.append(
            (f"student ({Path(args.artifacts).name})", Path(args.artifacts) / "student_int8.tflite", args.artifacts)
        )
    head = [
        "model",
        "core",
        "flash KB",
        "RAM KB",
        "instructions",
        "bit-exact",
        "top ops (instruction share)",
        "est. ms TFLM+CMSIS-NN",
        "est. ms per-MAC (vendor fit)",
    ]
    rows, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, bundle in models:
            for core in cores:
                out = Path(tmp) / f"{path.stem}-{core}"
                info = (
                    app.mcu_build(artifacts=bundle, core=core, out=out, run=True)
                    if bundle
                    else app.mcu_build(model=path, core=core, out=out, run=True)
                )
                rows.append(row(name, info, path))
                raw.append(
                    {
                        k: info[k]
                        for k in (
                            "model",
                            "core",
                            "flash_bytes",
                            "ram_bytes",
                            "bit_exact",
                            "emulated",
                            "build_s",
                            "compiled",
                            "cached",
                        )
                    }
                )
                print(" | ".join(rows[-1]), flush=True)
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(
        "CPI factors (edgekd.mcu.cpi): "
        + "; ".join(f"{f.core} {f.cpi:.3f} ({f.basis})" for f in cpi.factors().values())
    )
    print(
        "published ResNet-8: "
        + "; ".join(
            f"{r.board} ({r.profile}) {r.low_ms:g}–{r.high_ms:g} ms (vendor runtime)"
            for r in profiles.MLPERF_TINY_RESNET8
        )
        + f"; NUCLEO-L4R5ZI CMSIS-NN (microTVM) {cpi.PUBLISHED_M4_RESNET8_MS:.1f} ms"
    )
    if args.json:
        from edgekd.atomic import write_json

        write_json(args.json, report_json("mcu_emulate", {"rows": raw}))
    return 0 if all(r[5] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
