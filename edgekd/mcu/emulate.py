"""Run an application ELF of :mod:`edgekd.mcu.build` on its core's QEMU board and read what it
printed: the int8 output per sample, whether it matched the host's, and the instructions per
inference, total and per operator (TFLM's MicroProfiler over the instruction clock of
deploy/mcu/qemu/: ``-icount shift=0`` makes QEMU's virtual clock advance one nanosecond per
executed instruction). Standard library only.

Instruction counts are not cycles: a Cortex-M7 issues up to two instructions per cycle, a
load or a taken branch on an M4 takes two; :mod:`edgekd.mcu.estimate` turns them into cycles with a
per-core factor.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.mcu import toolchain
from edgekd.procs import run_bounded

_OUTPUT = re.compile(r"^edgekd: output (\d+) (\d+): ([-0-9,]*)$", re.MULTILINE)
_SAMPLE = re.compile(
    r"^edgekd: sample (\d+): class (-?\d+) \(label (-?\d+)\), (\d+) of (\d+) output values differ from the host's: "
    r"(ok|MISMATCH)$",
    re.MULTILINE,
)
_INVOKE = re.compile(r"^edgekd: invoke (\d+) ticks (\d+)$", re.MULTILINE)
_ARENA = re.compile(r"^edgekd: arena used (\d+) of (\d+) bytes$", re.MULTILINE)
_PROFILE = re.compile(r"^edgekd: profile (\d+)$", re.MULTILINE)
_EVENT = re.compile(r"^(\d+),([A-Za-z0-9_]+),(-?\d+)$")


class EmulationError(EdgekdError):
    """QEMU could not run the application."""


@dataclass
class EmulationResult:
    core: str
    board: str
    exit_code: int
    seconds: float
    outputs: dict[int, list[int]] = field(default_factory=dict)  # sample → int8 output values
    app_ok: dict[int, bool] = field(
        default_factory=dict
    )  # sample → the app's own check against the header's expected output
    classes: dict[int, int] = field(default_factory=dict)
    instructions: dict[int, int] = field(default_factory=dict)  # sample → instructions of one Invoke()
    per_op: dict[int, list[tuple[str, int]]] = field(
        default_factory=dict
    )  # sample → [(op, instructions)] in graph order
    arena_used: int | None = None
    log: str = ""

    def as_dict(self) -> dict[str, Any]:
        totals = list(self.instructions.values())
        return {
            "core": self.core,
            "board": self.board,
            "exit_code": self.exit_code,
            "emulator_s": round(self.seconds, 2),
            "instructions": round(sum(totals) / len(totals)) if totals else None,
            "instructions_min": min(totals) if totals else None,
            "instructions_max": max(totals) if totals else None,
            "per_op": op_shares(self),
            "arena_used_bytes": self.arena_used,
            "samples": len(self.outputs),
        }


def op_shares(result: EmulationResult) -> list[dict[str, Any]]:
    """Instructions per operator type, averaged over the samples, largest first, with its share of
    the profiled total."""
    by_op: dict[str, float] = {}
    for events in result.per_op.values():
        for op, n in events:
            by_op[op] = by_op.get(op, 0.0) + n / len(result.per_op)
    total = sum(by_op.values()) or 1.0
    rows = [
        {
            "op": op,
            "instructions": round(n),
            "share": round(n / total, 4),
            "count": sum(1 for o, _ in next(iter(result.per_op.values())) if o == op),
        }
        for op, n in by_op.items()
    ]
    return sorted(rows, key=lambda r: -r["instructions"])


def parse(log: str, core: str, board: str, exit_code: int, seconds: float) -> EmulationResult:
    log = log.replace("\r\n", "\n")  # MicroPrintf ends its lines with \r\n
    res = EmulationResult(core, board, exit_code, seconds, log=log)
    for s, offset, values in _OUTPUT.findall(log):
        out = res.outputs.setdefault(int(s), [])
        if int(offset) != len(out):
            raise EmulationError(f"sample {s}: output lines out of order (offset {offset} after {len(out)} values)")
        out.extend(int(v) for v in values.split(",") if v)
    for s, cls, _label, _differ, _n, verdict in _SAMPLE.findall(log):
        res.app_ok[int(s)] = verdict == "ok"
        res.classes[int(s)] = int(cls)
    for s, ticks in _INVOKE.findall(log):
        res.instructions[int(s)] = int(ticks)
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _PROFILE.match(line)
        if m:
            events = []
            for follow in lines[i + 1 :]:
                e = _EVENT.match(follow.strip())
                if e:
                    events.append((e.group(2), int(e.group(3))))
                elif not follow.startswith('"Event"'):
                    break
            res.per_op[int(m.group(1))] = events
    arena = _ARENA.search(log)
    res.arena_used = int(arena.group(1)) if arena else None
    return res


def run(elf: str | Path, core: str, timeout_s: float = 600.0) -> EmulationResult:
    """Run ``elf`` on the QEMU board of ``core`` with semihosting and instruction counting."""
    board = toolchain.BOARDS.get(core)
    qemu = toolchain.require("qemu-system-arm")
    cmd = [
        qemu,
        "-M",
        board.machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-icount",
        "shift=0",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(elf),
    ]
    start = time.perf_counter()
    try:
        done = run_bounded(cmd, timeout_s)  # its own process group, killed on timeout or with us
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"{Path(elf).name} on {board.machine}: no exit after {timeout_s:.0f} s") from exc
    log = (done.stdout or "") + (done.stderr or "")
    return parse(log, core, board.machine, done.returncode, time.perf_counter() - start)
