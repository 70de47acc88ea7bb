"""MCU latency and flash estimates from a ``.tflite`` file's ops and shapes (see :mod:`edgekd.mcu.profiles`
for every number used and how they were calibrated). Standard library only.

These are estimates for CMSIS-NN-class kernels on a real core, not measurements: the TFLite Micro
interpreter on this host runs reference kernels whose timing says nothing about a microcontroller.
"""

from __future__ import annotations

from edgekd.mcu import profiles as P
from edgekd.tflite_file import MAC_OPS, TfliteModel


def reference_cycles(model: TfliteModel, conv_cycles_per_mac: float = P.CONV_CYCLES_PER_MAC) -> float:
    """Cycles of one inference on the reference core (Cortex-M7)."""
    cycles = 0.0
    for op in model.ops:
        if op.name in MAC_OPS:
            cycles += model.macs(op) * conv_cycles_per_mac * P.MAC_COST.get(op.name, 1.0)
        else:
            elements = sum(model.tensors[i].elements for i in op.inputs if i >= 0 and model.tensors[i].buffer_bytes == 0)
            cycles += elements * P.ELEMENT_CYCLES.get(op.name, P.DEFAULT_ELEMENT_CYCLES)
        cycles += P.OP_DISPATCH_CYCLES
    return cycles


def estimate_ms(model: TfliteModel, profile: P.McuProfile) -> float:
    """Estimated latency (ms) of one inference on ``profile``."""
    return reference_cycles(model) * profile.factor / (profile.mhz * 1e3)


def estimates_ms(model: TfliteModel) -> dict[str, float]:
    """{profile name: estimated ms} for every named core-clock profile."""
    return {name: round(estimate_ms(model, P.PROFILES.get(name)), 3) for name in P.profile_names()}


def fit_conv_cycles(model: TfliteModel, reference: P.Reference) -> float:
    """The CONV_2D cycles-per-MAC that makes ``model``'s estimate on ``reference.profile`` equal the
    midpoint of its published range (the estimate is linear in that coefficient)."""
    profile = P.PROFILES.get(reference.profile)
    target = reference.mid_ms * profile.mhz * 1e3 / profile.factor  # reference-core cycles
    fixed = reference_cycles(model, 0.0)
    per_unit = reference_cycles(model, 1.0) - fixed
    return (target - fixed) / per_unit


def runtime_flash_bytes(model: TfliteModel) -> int:
    """Estimated code size of the TFLite Micro runtime with the kernels this model needs."""
    return P.RUNTIME_BASE_BYTES + sum(P.KERNEL_BYTES.get(name, P.DEFAULT_KERNEL_BYTES) for name in model.op_names)


def flash_bytes(model: TfliteModel) -> int:
    """Model flatbuffer (stored in flash as the C array) + the runtime estimate."""
    return model.size_bytes + runtime_flash_bytes(model)
