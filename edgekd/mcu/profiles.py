"""The MCU profile table: cores, clocks, memory budgets, kernel costs and the published figures the
latency estimate is calibrated and checked against. Everything the estimate assumes is in this file.

How the estimate works (:mod:`edgekd.mcu.estimate`): cycles = Σ over the ops of the model
(MACs × cycles-per-MAC of the op's kernel, or elements × cycles-per-element for ops without weights)
+ a fixed dispatch cost per op, all × the core's factor; latency = cycles / clock. Kernel costs are
those of CMSIS-NN-class int8 kernels on a Cortex-M7 (the reference core, factor 1.0).

Calibration, honestly stated: ONE number is fitted, the Cortex-M7 cycles per MAC of CONV_2D
(``CONV_CYCLES_PER_MAC``), from ONE published figure, the STM32H7A3 (Cortex-M7, 280 MHz) median of
the MLPerf Tiny ResNet-8 reference (47–54 ms; the fit uses the midpoint, 50.5 ms). The other kernel
costs are ratios to it taken as priors (not fitted), and so are the core factors. The STM32F746
(another Cortex-M7, 216 MHz) and STM32L4R5 (Cortex-M4, 120 MHz) figures are NOT used by the fit:
they check it (``benchmarks/mcu_estimate.py`` and tests/test_mcu.py print/assert the errors). The
Cortex-M33, M0+ and M55 factors have no published ResNet-8 figure here to check against: treat those
estimates as order-of-magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.registry import Registry

# --- kernel costs on the reference core (Cortex-M7, CMSIS-NN-class int8 kernels) ------------------

# Fitted (see the module docstring): 50.5 ms × 280 MHz = 14.14 M cycles for ResNet-8 (12.50 M MACs,
# all but 640 in CONV_2D); less the per-op and elementwise cycles, solving the estimate for this one
# coefficient gives the value below (edgekd.mcu.estimate.fit_conv_cycles; tests/test_mcu.py re-derives
# it from the table, so a change to another cost cannot silently detune it).
CONV_CYCLES_PER_MAC = 1.0880

# cycles per MAC of the other weight ops, as multiples of CONV_2D (priors, not fitted): depthwise
# convolutions reuse each loaded input ~KH·KW fewer times than a regular convolution and vectorise
# worse; fully connected layers read every weight once (memory bound at batch 1).
MAC_COST = {
    "CONV_2D": 1.0,
    "TRANSPOSE_CONV": 1.2,
    "DEPTHWISE_CONV_2D": 1.8,
    "FULLY_CONNECTED": 1.3,
    "BATCH_MATMUL": 1.3,
}
# cycles per input element for ops without weights (priors): int8 elementwise ops requantize each
# element (multiply, shift, clamp); softmax/logistic/tanh evaluate a lookup or exp; reshapes are free
ELEMENT_CYCLES = {
    "ADD": 9.0,
    "SUB": 9.0,
    "MUL": 9.0,
    "AVERAGE_POOL_2D": 2.0,
    "MAX_POOL_2D": 2.0,
    "MEAN": 3.0,
    "SOFTMAX": 40.0,
    "LOGISTIC": 20.0,
    "TANH": 20.0,
    "HARD_SWISH": 12.0,
    "RELU": 1.5,
    "RELU6": 1.5,
    "LEAKY_RELU": 4.0,
    "QUANTIZE": 6.0,
    "DEQUANTIZE": 6.0,
    "CONCATENATION": 1.0,
    "PAD": 1.0,
    "PADV2": 1.0,
    "TRANSPOSE": 3.0,
    "RESHAPE": 0.0,
    "SQUEEZE": 0.0,
    "EXPAND_DIMS": 0.0,
    "MAXIMUM": 2.0,
    "MINIMUM": 2.0,
    "STRIDED_SLICE": 1.0,
    "SLICE": 1.0,
    "SUM": 3.0,
    "REDUCE_MAX": 2.0,
}
DEFAULT_ELEMENT_CYCLES = 4.0  # any other op without weights (edgekd.mcu.estimate.unpriced_ops names them)
# ops costed per OUTPUT element (what they write) instead of per input element: a PAD writes more
# than it reads, a TRANSPOSE or CONCATENATION moves every output element once
OUTPUT_SIZED_OPS = frozenset({"PAD", "PADV2", "MIRROR_PAD", "TRANSPOSE", "CONCATENATION", "TILE", "BROADCAST_TO"})
OP_DISPATCH_CYCLES = 800  # TFLM interpreter per-op overhead (Eval call, tensor lookups), prior

# --- flash: the runtime that ships next to the model ----------------------------------------------

# Rough Thumb-2 code size (-Os) of TFLite Micro's interpreter, allocator and flatbuffer access,
# with MicroMutableOpResolver, without the application; an estimate, not a measurement.
RUNTIME_BASE_BYTES = 20 * 1024
# Kernel code per op type (CMSIS-NN optimized kernels pull in several paths each); estimates.
KERNEL_BYTES = {
    "CONV_2D": 8192,
    "DEPTHWISE_CONV_2D": 8192,
    "FULLY_CONNECTED": 3072,
    "TRANSPOSE_CONV": 4096,
    "SOFTMAX": 3072,
    "ADD": 2048,
    "SUB": 2048,
    "MUL": 2048,
    "AVERAGE_POOL_2D": 2048,
    "MAX_POOL_2D": 2048,
    "RESHAPE": 512,
    "SQUEEZE": 512,
    "EXPAND_DIMS": 512,
    "QUANTIZE": 1536,
    "DEQUANTIZE": 1536,
}
DEFAULT_KERNEL_BYTES = 2048


# --- cores ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Core:
    name: str
    factor: float  # cycles relative to the Cortex-M7 for the same kernels
    basis: str  # where the factor comes from


CORES = {
    c.name: c
    for c in (
        Core("cortex-m7", 1.0, "reference core; CONV_2D cost fitted on STM32H7A3"),
        # M4 and M33 have the same DSP extension (SMLAD: two 16-bit MACs per instruction) as the
        # M7 but issue one instruction per cycle, the M7 up to two: the CoreMark/MHz ratios (Arm:
        # M7 5.01, M4 3.54, M33 4.02) are the prior for how much of that dual issue a kernel keeps
        Core("cortex-m4", 5.01 / 3.54, "prior: CoreMark/MHz ratio M7/M4 (5.01/3.54); checked on STM32L4R5"),
        Core("cortex-m33", 5.01 / 4.02, "prior: CoreMark/MHz ratio M7/M33 (5.01/4.02); unchecked"),
        # no DSP extension: CMSIS-NN falls back to scalar C (two byte loads, a multiply and an
        # add per MAC on a 2-stage pipeline), roughly 6–8 cycles per MAC against the M7's ~1.1
        Core("cortex-m0plus", 6.0, "prior: scalar kernels without the DSP extension; unchecked"),
        # Helium (MVE) vector kernels: up to 8 int8 MACs per cycle on the dual-beat M55; a third of
        # the M7's cycles is a conservative share of that peak
        Core("cortex-m55", 0.33, "prior: Helium MVE int8 kernels; unchecked"),
    )
}


@dataclass(frozen=True)
class McuProfile:
    name: str  # <core>-<clock>
    core: str
    mhz: float
    flash_kb: int  # budget defaults: the example part's on-chip flash / SRAM
    ram_kb: int
    example: str

    @property
    def factor(self) -> float:
        return CORES[self.core].factor


PROFILES: Registry[McuProfile] = Registry("MCU profile")

for _p in (
    McuProfile("cortex-m7-280mhz", "cortex-m7", 280, 2048, 1376, "STM32H7A3 (NUCLEO-H7A3ZI-Q)"),
    McuProfile("cortex-m7-216mhz", "cortex-m7", 216, 1024, 320, "STM32F746 (NUCLEO-F746ZG)"),
    McuProfile("cortex-m4-120mhz", "cortex-m4", 120, 2048, 640, "STM32L4R5 (NUCLEO-L4R5ZI)"),
    McuProfile("cortex-m4-80mhz", "cortex-m4", 80, 1024, 128, "STM32L476 (NUCLEO-L476RG)"),
    McuProfile("cortex-m33-160mhz", "cortex-m33", 160, 2048, 786, "STM32U585 (B-U585I-IOT02A)"),
    McuProfile("cortex-m0plus-64mhz", "cortex-m0plus", 64, 512, 144, "STM32G0B1 (NUCLEO-G0B1RE)"),
    McuProfile("cortex-m55-160mhz", "cortex-m55", 160, 1024, 512, "Alif Ensemble E3, high-efficiency core"),
):
    PROFILES.register(_p.name)(_p)

# `--mcu cortex-m7` etc.: a bare core name means its first profile above
CORE_DEFAULT = {
    "cortex-m7": "cortex-m7-216mhz",
    "cortex-m4": "cortex-m4-120mhz",
    "cortex-m33": "cortex-m33-160mhz",
    "cortex-m0plus": "cortex-m0plus-64mhz",
    "cortex-m55": "cortex-m55-160mhz",
}
for _core, _name in CORE_DEFAULT.items():
    PROFILES.register(_core)(PROFILES.get(_name))


def profile_names() -> list[str]:
    """The named core-clock profiles (without the bare-core aliases)."""
    return [n for n in PROFILES.names() if n not in CORE_DEFAULT]


# --- published figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    board: str
    profile: str
    low_ms: float
    high_ms: float
    role: str  # "fit": used to set CONV_CYCLES_PER_MAC; "check": only compared against

    @property
    def mid_ms(self) -> float:
        return (self.low_ms + self.high_ms) / 2


# MLPerf Tiny v1.0/v1.1 image-classification (ResNet-8, int8) median latencies with vendor/CMSIS-NN
# class kernels, as collected in shared/data/mlperf-tiny/README.md.
MLPERF_TINY_RESNET8 = (
    Reference("STM32H7A3", "cortex-m7-280mhz", 47.0, 54.0, "fit"),
    Reference("STM32F746", "cortex-m7-216mhz", 62.0, 65.0, "check"),
    Reference("STM32L4R5", "cortex-m4-120mhz", 165.0, 227.0, "check"),
)
MLPERF_TINY_RESNET8_MACS = 12_501_632
