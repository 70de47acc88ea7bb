"""The Arm bare-metal toolchain and QEMU boards edgekd builds and runs its MCU application with:
which core maps to which compiler flags and which emulated board, and one clear error saying what
to install when a tool is missing. Standard library only."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from edgekd.errors import EdgekdError
from edgekd.registry import Registry

# Debian/Ubuntu packages that provide the tools (README "Microcontrollers"): the compiler, newlib
# (C library with the semihosting syscalls), libstdc++ for newlib, and the system emulator
APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"


class ToolchainMissing(EdgekdError):
    """arm-none-eabi-gcc / qemu-system-arm is not installed."""


@dataclass(frozen=True)
class Board:
    core: str  # cortex-m4 …, the name `--emulate` and `--core` take
    machine: str  # qemu-system-arm -M
    cpu_flags: tuple[str, ...]  # compiler flags for the core (hard-float ABI: every core here has an FPU)
    linker_script: str  # deploy/mcu/qemu/<machine>.ld


BOARDS: Registry[Board] = Registry("emulated Cortex-M core")
for _b in (
    # -mfpu=auto takes the FPU (and the M55's Helium/MVE) from -mcpu: CMSIS-NN picks its DSP (M4,
    # M7, M33) or MVE (M55) kernels from the macros that follow
    Board("cortex-m4", "mps2-an386", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto"), "mps2-an386.ld"),
    Board("cortex-m7", "mps2-an500", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto"), "mps2-an500.ld"),
    Board(
        "cortex-m33", "mps2-an505", ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto"), "mps2-an505.ld"
    ),
    Board(
        "cortex-m55", "mps3-an547", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto"), "mps3-an547.ld"
    ),
):
    BOARDS.register(_b.core)(_b)


def require(tool: str) -> str:
    """The path of ``tool``, or :class:`ToolchainMissing` naming the packages to install."""
    path = shutil.which(tool)
    if path is None:
        raise ToolchainMissing(
            f"{tool} is not installed; install the Arm toolchain and emulator: apt-get install {APT_PACKAGES}"
        )
    return path


@cache
def compiler_id(gcc: str) -> str:
    """First line of ``gcc --version``: part of every cache key (another compiler, other objects)."""
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False).stdout
    return (out.splitlines() or ["unknown"])[0]


def available() -> bool:
    """Are the compiler and the emulator both installed?"""
    return all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm"))
