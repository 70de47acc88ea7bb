"""The second MCU latency estimate: cycles = instructions × cycles-per-instruction of the core.

The instructions are counted, not estimated: TFLite Micro + CMSIS-NN built for the core and run
on its QEMU board (:mod:`edgekd.mcu.emulate`). What QEMU cannot say is how many cycles each
instruction takes on silicon (wait states, dual issue, load-use stalls): that is the one factor per
core in :data:`CPI`, and the figure it gives stands for TFLite Micro + CMSIS-NN, the runtime the
app template uses. The per-MAC estimate of :mod:`edgekd.mcu.estimate` stays for machines without
the Arm toolchain; it is fitted on the fastest published submissions (vendor runtimes).

Calibration, honestly stated: ONE published figure with CMSIS-NN kernels sets the Cortex-M4
factor, MLPerf Tiny v1.0 closed division, OctoML "microtvm_cmsis_nn" on a NUCLEO-L4R5ZI
(Cortex-M4, 120 MHz): image classification (ResNet-8) at 2.567 inferences/s, i.e. 100 inferences in
38.955 s, 389.6 ms each (mlcommons/tiny_results_v1.0,
closed/OctoML/results/microtvm_cmsis_nn/NUCLEO_L4R5ZI/ic/performance/results.txt). Its kernels are
CMSIS-NN, its runtime microTVM's, not TFLM's interpreter; TFLM's per-op dispatch is a small share
of ResNet-8 (the per-op profile shows it), so the factor carries over. The other cores' factors are
priors scaled from the M4's by the CoreMark/MHz ratios Arm publishes (M4 3.54, M33 4.02, M7 5.01,
M55 4.2), unchecked against a TFLM + CMSIS-NN figure; the M7's is compared in
``benchmarks/mcu_emulate.py`` with the STM32 figures of :mod:`edgekd.mcu.profiles` (vendor runtime).
"""

from __future__ import annotations

from dataclasses import dataclass

# The calibration: published CMSIS-NN ResNet-8 latency on a 120 MHz Cortex-M4, and the instructions
# TFLM + CMSIS-NN executes for one ResNet-8 inference on the emulated Cortex-M4 (mean over the
# 4 random samples of `edgekd mcu build --model resnet8_quant.tflite --core cortex-m4 --run`;
# tests/test_mcu_emulate.py re-measures it)
PUBLISHED_M4_RESNET8_MS = 38_955 / 100
PUBLISHED_M4_MHZ = 120
RESNET8_INSTRUCTIONS_M4 = 29_867_200

# CoreMark/MHz (Arm's published figures): the prior for how the cores compare per instruction
COREMARK_PER_MHZ = {"cortex-m4": 3.54, "cortex-m33": 4.02, "cortex-m7": 5.01, "cortex-m55": 4.2}


@dataclass(frozen=True)
class CpiFactor:
    core: str
    cpi: float
    basis: str


def m4_cpi() -> float:
    """Cycles per instruction that turn the emulated M4's ResNet-8 count into the published latency."""
    return PUBLISHED_M4_RESNET8_MS * 1e-3 * PUBLISHED_M4_MHZ * 1e6 / RESNET8_INSTRUCTIONS_M4


def factors() -> dict[str, CpiFactor]:
    base = m4_cpi()
    out = {
        "cortex-m4": CpiFactor(
            "cortex-m4", base, "calibrated: MLPerf Tiny v1.0 CMSIS-NN ResNet-8 on NUCLEO-L4R5ZI (389.6 ms at 120 MHz)"
        )
    }
    for core in ("cortex-m33", "cortex-m7", "cortex-m55"):
        ratio = COREMARK_PER_MHZ["cortex-m4"] / COREMARK_PER_MHZ[core]
        out[core] = CpiFactor(
            core,
            base * ratio,
            f"prior: M4 factor × CoreMark/MHz ratio M4/{core[7:].upper()} "
            f"({COREMARK_PER_MHZ['cortex-m4']}/{COREMARK_PER_MHZ[core]}); unchecked",
        )
    return out


def cycles_from_instructions(instructions: float, core: str) -> float:
    """Estimated cycles of ``instructions`` executed on ``core`` (TFLM + CMSIS-NN)."""
    return instructions * factors()[core].cpi


def ms_from_instructions(instructions: float, core: str, mhz: float) -> float:
    return cycles_from_instructions(instructions, core) / (mhz * 1e3)
