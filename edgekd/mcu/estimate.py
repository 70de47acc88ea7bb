"""MCU latency and flash estimates from a ``.tflite`` file's ops and shapes (see :mod:`edgekd.mcu.profiles`
for every number used and how they were calibrated). Standard library only.

These are estimates for CMSIS-NN-class kernels on a real core, not measurements: the TFLite Micro
interpreter on this host runs reference kernels whose timing says nothing about a microcontroller.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.mcu import profiles as P
from edgekd.tflite_file import MAC_OPS, TfliteModel


@dataclass(frozen=True)
class OpCost:
    """One op's share of the estimate on the reference core."""

    index: int  # position in the graph
    op: str
    macs: int  # 0 for ops without weights
    elements: int  # the elements the cost is per: 0 for MAC ops
    cycles: float  # MAC or element cycles + the per-op dispatch
    basis: str  # "macs", "elements" (a cost from the table) or "default" (an op the table lacks)


def op_costs(model: TfliteModel, conv_cycles_per_mac: float = P.CONV_CYCLES_PER_MAC) -> list[OpCost]:
    """Every op of ``model`` with its estimated cycles on the reference core (Cortex-M7): none is
    skipped, so a PAD, MEAN or TRANSPOSE that a leaner graph drops shows in the total."""
    rows = []
    for i, op in enumerate(model.ops):
        if op.name in MAC_OPS:
            macs = model.macs(op)
            cycles, elements, basis = macs * conv_cycles_per_mac * P.MAC_COST.get(op.name, 1.0), 0, "macs"
        else:
            macs = 0
            if op.name in P.OUTPUT_SIZED_OPS:  # what it writes: a pad or copy is bigger than its input
                elements = model.output_elements(op)
            else:
                elements = sum(
                    model.tensors[t].elements for t in op.inputs if t >= 0 and model.tensors[t].buffer_bytes == 0
                )
            basis = "elements" if op.name in P.ELEMENT_CYCLES else "default"
            cycles = elements * P.ELEMENT_CYCLES.get(op.name, P.DEFAULT_ELEMENT_CYCLES)
        rows.append(OpCost(i, op.name, macs, elements, cycles + P.OP_DISPATCH_CYCLES, basis))
    return rows


def reference_cycles(model: TfliteModel, conv_cycles_per_mac: float = P.CONV_CYCLES_PER_MAC) -> float:
    """Cycles of one inference on the reference core (Cortex-M7): the sum of :func:`op_costs`."""
    return sum(row.cycles for row in op_costs(model, conv_cycles_per_mac))


def cycles_by_op(model: TfliteModel) -> dict[str, float]:
    """{op name: reference-core cycles of all its instances}, largest first."""
    totals: dict[str, float] = {}
    for row in op_costs(model):
        totals[row.op] = totals.get(row.op, 0.0) + row.cycles
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def unpriced_ops(model: TfliteModel) -> list[str]:
    """Ops the cost table has no entry for (estimated at ``DEFAULT_ELEMENT_CYCLES`` per element)."""
    return list(dict.fromkeys(row.op for row in op_costs(model) if row.basis == "default"))


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
    if per_unit <= 0:
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"{model.path.name}: no CONV_2D MACs to fit the CONV_2D cost on")
    return (target - fixed) / per_unit


def runtime_flash_bytes(model: TfliteModel) -> int:
    """Estimated code size of the TFLite Micro runtime with the kernels this model needs."""
    return P.RUNTIME_BASE_BYTES + sum(P.KERNEL_BYTES.get(name, P.DEFAULT_KERNEL_BYTES) for name in model.op_names)


def flash_bytes(model: TfliteModel) -> int:
    """Model flatbuffer (stored in flash as the C array) + the runtime estimate."""
    return model.size_bytes + runtime_flash_bytes(model)
