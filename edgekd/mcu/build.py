"""Build deploy/mcu/main.cc for one int8 model against TensorFlow Lite Micro + CMSIS-NN for one
Cortex-M core, as a bare-metal ELF for the core's QEMU board (:mod:`edgekd.mcu.toolchain`).

What gets compiled: TFLM's interpreter core, the kernels the model's ops need (CMSIS-NN's version
where TFLM has one, else the reference kernel) with the kernel files they include, and CMSIS-NN's C
sources; ``kernels="all"`` compiles every TFLM kernel instead. Each object file is cached under
``<cache>/mcu/obj/`` by a key of the sources' identity, the file, the flags and the compiler, so a
second build (another model, the same core) compiles only the application. The flash and RAM
figures come from the linker map. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.mcu import toolchain
from edgekd.mcu.sources import SourceTree
from edgekd.procs import run_bounded

QEMU_DIR = Path(__file__).resolve().parents[2] / "deploy" / "mcu" / "qemu"  # start-up, linker scripts, tick source
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "mcu" / "main.cc"
KERNEL_MODES = ("model", "all")
_TOOL_TIMEOUT_S = 3600.0  # one compiler, linker or nm call; generous: a loaded 2-core machine is slow

# TFLM's own flags (tools/make/Makefile: COMMON_FLAGS, CXXFLAGS; -Os for the core, -O2 for kernels
# and third-party kernels) without its warnings; BUILD_TYPE=release_with_logs (NDEBUG, logs kept:
# the app reports through MicroPrintf)
_COMMON = (
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-fmessage-length=0",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    "-DKERNELS_OPTIMIZED_FOR_SPEED",
    "-DTF_LITE_MCU_DEBUG_LOG",
    "-DCMSIS_NN",
    "-DNDEBUG",
    "-fomit-frame-pointer",
    "-funsigned-char",
    "-mlittle-endian",
    "-w",
)
_CXX = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
_C = ("-std=c17",)
# core files TFLM replaces per platform or that only its tests use
_CORE_EXCLUDE = {
    "micro_time.cc",
    "test_helpers.cc",
    "test_helper_custom_ops.cc",
    "fake_micro_context.cc",
    "mock_micro_graph.cc",
}
_REGISTER = re.compile(r"^TFLMRegistration\s+Register_([A-Z0-9_]+)\s*\(", re.MULTILINE)
_INCLUDE = re.compile(r'^#include\s+"tensorflow/lite/micro/kernels/([a-z0-9_]+)\.h"', re.MULTILINE)
_DEFINITION = re.compile(r"^[A-Za-z_][\w \t*]*?\b([A-Za-z_]\w*)\s*[(\[]")
_MAP_SECTION = re.compile(r"^(\.[A-Za-z_.]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", re.MULTILINE)


class BuildError(EdgekdError):
    """The application did not compile or link (the message names the step and the compiler's first error)."""


@dataclass
class Sizes:
    """From the linker map: flash = .text + .rodata + .ARM.exidx + .data's initial values; RAM =
    .data + .bss (tensor arena included). The profiler's buffers (.profiler) are left out of RAM:
    a deployed build has no profiler."""

    sections: dict[str, int]
    flash_bytes: int
    ram_bytes: int
    profiler_bytes: int


@dataclass
class BuildResult:
    elf: Path
    map: Path
    core: str
    board: str
    sizes: Sizes
    compiled: int  # object files compiled by this build (0 when every library object was cached)
    cached: int
    seconds: float
    kernels: str
    sources: str
    kernel_files: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU seconds of the compiler and linker processes (load-independent cost)

    def as_dict(self) -> dict[str, Any]:
        return {
            "elf": str(self.elf),
            "map": str(self.map),
            "core": self.core,
            "board": self.board,
            "flash_bytes": self.sizes.flash_bytes,
            "ram_bytes": self.sizes.ram_bytes,
            "profiler_bytes": self.sizes.profiler_bytes,
            "sections": self.sizes.sections,
            "compiled": self.compiled,
            "cached": self.cached,
            "build_s": round(self.seconds, 2),
            "build_cpu_s": round(self.cpu_s, 1),
            "kernels": self.kernels,
            "sources": self.sources,
            "kernel_files": self.kernel_files,
        }


def kernel_table(tree: SourceTree) -> dict[str, Path]:
    """{TFLite op name: the .cc that defines its TFLMRegistration}, CMSIS-NN's file where TFLM has one."""
    kernels = tree.tflm / "tensorflow/lite/micro/kernels"
    table: dict[str, Path] = {}
    for folder in (kernels, kernels / "cmsis_nn"):  # CMSIS-NN second: its files replace the reference ones
        for path in sorted(folder.glob("*.cc")):
            if not path.name.endswith("_test.cc"):
                for op in _REGISTER.findall(path.read_text(errors="replace")):
                    table[op] = path
    return table


def _with_dependencies(files: set[Path], tree: SourceTree) -> set[Path]:
    """Add the kernel helpers the files include: ``kernels/X.h`` brings ``X_common.cc``, and ``X.cc``
    when that file registers no op (kernel_util, micro_tensor_utils, lstm_eval …), transitively."""
    kernels = tree.tflm / "tensorflow/lite/micro/kernels"
    todo, done = list(files), set(files)
    while todo:
        path = todo.pop()
        for stem in _INCLUDE.findall(path.read_text(errors="replace")):
            for cand in (kernels / f"{stem}_common.cc", kernels / f"{stem}.cc"):
                if cand in done or not cand.is_file():
                    continue
                if cand.name == f"{stem}.cc" and _REGISTER.search(cand.read_text(errors="replace")):
                    continue  # another op's kernel: only the op list decides those
                done.add(cand)
                todo.append(cand)
    return done


def kernel_sources(tree: SourceTree, ops: Sequence[str], mode: str = "model") -> list[Path]:
    table = kernel_table(tree)
    if mode == "all":
        wanted = set(table.values())
    else:
        missing = sorted(set(ops) - set(table))
        if missing:
            raise BuildError(f"TFLite Micro ({tree.origin}) has no kernel for {', '.join(missing)}")
        wanted = {table[op] for op in ops}
    kernels = tree.tflm / "tensorflow/lite/micro/kernels"
    return sorted(_with_dependencies(wanted | {kernels / "kernel_util.cc"}, tree))


def core_sources(tree: SourceTree) -> list[Path]:
    """TFLM's MICROLITE_CC_BASE_SRCS (tools/make/sources.inc) without tests and the platform time."""
    micro = tree.tflm / "tensorflow/lite/micro"
    out = [
        p
        for sub in ("", "arena_allocator", "memory_planner", "tflite_bridge")
        for p in sorted((micro / sub).glob("*.cc"))
    ]
    out = [p for p in out if not p.name.endswith("_test.cc") and p.name not in _CORE_EXCLUDE]
    lite = tree.tflm / "tensorflow"
    for dirpath, dirnames, filenames in os.walk(lite):
        rel = Path(dirpath).relative_to(tree.tflm).as_posix()
        if rel in ("tensorflow/lite/micro", "tensorflow/lite/experimental"):
            dirnames[:] = []
            continue
        dirnames.sort()
        out += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if f.endswith((".cc", ".c")) and not f.endswith("_test.cc") and f != "array.cc"
        ]
    return out


def cmsis_nn_sources(tree: SourceTree) -> list[Path]:
    """Every C file of CMSIS-NN's Source/ (``kernels="all"``: a static library of all of them)."""
    return sorted((tree.cmsis_nn / "Source").rglob("*.c"))


def cmsis_nn_index(tree: SourceTree) -> dict[str, Path]:
    """{symbol: the CMSIS-NN C file that defines it} from each file's column-0 definitions (CMSIS-NN
    puts the return type and the name on one line; file names do not always match function names)."""
    index: dict[str, Path] = {}
    for path in cmsis_nn_sources(tree):
        for line in path.read_text(errors="replace").splitlines():
            if (
                line[:1].isalpha()
                and not line.rstrip().endswith(";")
                and not line.startswith(("static", "#", "if", "return"))
            ):
                m = _DEFINITION.match(line)
                if m:
                    index.setdefault(m.group(1), path)
    return index


def undefined_symbols(objects: Sequence[Path]) -> set[str]:
    """Symbols the objects reference but do not define (``nm``)."""
    nm = toolchain.require("arm-none-eabi-nm")
    done = run_bounded([nm, "-u", "--format=posix", *map(str, objects)], _TOOL_TIMEOUT_S)
    undefined = {line.split()[0] for line in done.stdout.splitlines() if line and not line.endswith(":")}
    defined = run_bounded([nm, "--defined-only", "--format=posix", *map(str, objects)], _TOOL_TIMEOUT_S)
    return undefined - {
        line.split()[0]
        for line in defined.stdout.splitlines()
        if line and not line.endswith(":") and len(line.split()) > 1
    }


def _flags(path: Path, board: toolchain.Board, tree: SourceTree, kind: str) -> list[str]:
    opt = "-Os" if kind == "core" else "-O2"
    lang = _C if path.suffix == ".c" else _CXX
    return [*board.cpu_flags, opt, *_COMMON, *lang, *(f"-I{d}" for d in tree.include_dirs)]


def _object_key(path: Path, flags: list[str], tree: SourceTree, compiler: str) -> str:
    """The source tree's identity (it covers the file and every header it may include) and the
    file's path in it; for a file outside the tree (deploy/mcu/qemu/) its content instead. Then the
    flags without include paths (where the cache folder lies is not content) and the compiler."""
    rel = None
    for root in (tree.tflm, tree.cmsis_nn, tree.cmsis):
        if path.is_relative_to(root):
            rel = path.relative_to(root).as_posix()
            break
    if rel is None:
        rel = path.name + ":" + hashlib.sha256(path.read_bytes()).hexdigest()
    flags = [f for f in flags if not f.startswith("-I")]
    return hashlib.sha256("\0".join([tree.identity, rel, compiler, *flags]).encode()).hexdigest()[:24]


def _compile(tool: str, source: Path, flags: list[str], obj: Path) -> str | None:
    """Compile into ``obj`` atomically; the compiler's first error lines on failure."""
    obj.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".o", dir=obj.parent)
    os.close(fd)
    try:
        try:
            done = run_bounded([tool, *flags, "-c", str(source), "-o", tmp], _TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{source.name}: no result after {_TOOL_TIMEOUT_S:.0f} s"
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.strip().splitlines()[
                -3:
            ]
            return f"{source.name}: {' | '.join(errors[:3])[:400]}"
        os.replace(tmp, obj)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def compile_objects(
    sources: list[tuple[Path, str]],
    board: toolchain.Board,
    tree: SourceTree,
    cache: Path,
    jobs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Path], int]:
    """Object files of ``sources`` (path, "core" | "kernel"), from the cache where present.
    Returns (objects, how many were compiled now)."""
    gcc, gxx = toolchain.require("arm-none-eabi-gcc"), toolchain.require("arm-none-eabi-g++")
    compiler = toolchain.compiler_id(gxx)
    todo, objects = [], []
    for src, kind in sources:
        flags = _flags(src, board, tree, kind)
        obj = cache / "obj" / board.core / f"{src.stem}-{_object_key(src, flags, tree, compiler)}.o"
        objects.append(obj)
        if not obj.is_file():
            todo.append((gcc if src.suffix == ".c" else gxx, src, flags, obj))
    if todo:
        if log:
            log(
                f"mcu build: compiling {len(todo)} of {len(sources)} library files for {board.core} (cached after this)"
            )
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            errors = [e for e in pool.map(lambda t: _compile(*t), todo) if e]
        if errors:
            raise BuildError(f"compiling TFLM for {board.core} failed ({len(errors)} files): {errors[0]}")
    return objects, len(todo)


def children_cpu_s() -> float:
    """CPU seconds used so far by finished child processes (the compilers): a build cost that,
    unlike wall time, does not depend on what else the machine is running."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_map(text: str) -> Sizes:
    """Output-section sizes from a GNU ld map file (``.text 0x00000000 0x1a2b4``)."""
    sections: dict[str, int] = {}
    memory = text.split("Linker script and memory map", 1)[-1]
    for name, _addr, size in _MAP_SECTION.findall(memory):
        if (
            name in (".vectors", ".text", ".rodata", ".ARM.exidx", ".data", ".bss", ".profiler")
            and name not in sections
        ):
            sections[name] = int(size, 16)
    if ".text" not in sections or ".bss" not in sections:
        raise BuildError("the linker map has no .text/.bss sections: not a map of deploy/mcu/qemu/sections.ld")
    flash = sum(sections.get(s, 0) for s in (".text", ".rodata", ".ARM.exidx", ".data"))
    ram = sections.get(".data", 0) + sections.get(".bss", 0)
    return Sizes(sections, flash, ram, sections.get(".profiler", 0))


def build_app(
    app_dir: Path,
    config_header: Path,
    model_data: Path,
    ops: Sequence[str],
    core: str,
    tree: SourceTree,
    cache: Path,
    kernels: str = "model",
    profile: bool = True,
    jobs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Compile and link the application in ``app_dir`` (``app.elf``, ``app.map``). ``config_header``
    and ``model_data`` (.cc) are what :mod:`edgekd.mcu.codegen` wrote; ``profile`` adds TFLM's
    MicroProfiler with the instruction clock of deploy/mcu/qemu/micro_time.cc."""
    if kernels not in KERNEL_MODES:
        raise BuildError(f"kernels must be one of {', '.join(KERNEL_MODES)}, got {kernels!r}")
    board = toolchain.BOARDS.get(core)
    start, cpu0 = time.perf_counter(), children_cpu_s()
    kernel_files = kernel_sources(tree, ops, kernels)
    library = [(p, "core") for p in core_sources(tree)] + [(QEMU_DIR / "micro_time.cc", "core")]
    library += [(p, "kernel") for p in kernel_files]
    if kernels == "all":
        library += [(p, "kernel") for p in cmsis_nn_sources(tree)]
    objects, compiled = compile_objects(library, board, tree, cache / "mcu", jobs, log)
    if kernels == "model":
        # only the CMSIS-NN files the kernels reach: follow the undefined symbols until none is new
        index, chosen = cmsis_nn_index(tree), set()
        frontier = objects
        while True:
            new = {index[sym] for sym in undefined_symbols(frontier) if sym in index} - chosen
            if not new:
                break
            chosen |= new
            frontier, n = compile_objects([(p, "kernel") for p in sorted(new)], board, tree, cache / "mcu", jobs, log)
            objects, compiled = objects + frontier, compiled + n
        kernel_files = kernel_files + sorted(chosen)

    gxx = toolchain.require("arm-none-eabi-g++")
    app_flags = [
        *board.cpu_flags,
        "-O2",
        *_COMMON,
        *_CXX,
        f"-I{config_header.parent}",
        f"-I{model_data.parent}",
        *(f"-I{d}" for d in tree.include_dirs),
    ]
    app_flags += [f'-DEDGEKD_TFLM_CONFIG="{config_header.name}"'] + (["-DEDGEKD_PROFILE"] if profile else [])
    app_objects = []
    for src, flags in (
        (TEMPLATE, app_flags),
        (model_data, app_flags),
        (QEMU_DIR / "startup.c", [*board.cpu_flags, "-O2", *_C, "-ffunction-sections"]),
    ):
        obj = app_dir / f"{src.stem}.o"
        error = _compile(gxx if src.suffix == ".cc" else toolchain.require("arm-none-eabi-gcc"), src, flags, obj)
        if error:
            raise BuildError(f"compiling the application failed: {error}")
        app_objects.append(obj)

    # objects into one archive so the linker keeps only what the application reaches
    archive = app_dir / "libtflm.a"
    archive.unlink(missing_ok=True)
    ar = toolchain.require("arm-none-eabi-ar")
    with tempfile.NamedTemporaryFile("w", suffix=".rsp", dir=app_dir, delete=False) as rsp:
        rsp.write("\n".join(str(o) for o in objects))
    try:
        done = run_bounded([ar, "rcs", str(archive), f"@{rsp.name}"], _TOOL_TIMEOUT_S)
    finally:
        os.unlink(rsp.name)
    if done.returncode != 0:
        raise BuildError(f"archiving the TFLM objects failed: {done.stderr.strip()[:300]}")
    elf, map_path = app_dir / "app.elf", app_dir / "app.map"
    link = [
        gxx,
        *board.cpu_flags,
        "--specs=rdimon.specs",
        "-nostartfiles",
        f"-L{QEMU_DIR}",
        f"-T{QEMU_DIR / board.linker_script}",
        "-Wl,--gc-sections",
        f"-Wl,-Map={map_path}",
        "-o",
        str(elf),
        *map(str, app_objects),
        str(archive),
        "-lm",
    ]
    done = run_bounded(link, _TOOL_TIMEOUT_S)
    if done.returncode != 0:
        lines = [
            line for line in done.stderr.splitlines() if "undefined reference" in line or "error" in line.lower()
        ] or done.stderr.splitlines()[-3:]
        raise BuildError(f"linking the application for {core} failed: {' | '.join(lines[:3])[:500]}")
    archive.unlink(missing_ok=True)
    sizes = parse_map(map_path.read_text(errors="replace"))
    rel = [
        p.relative_to(tree.tflm).as_posix()
        if p.is_relative_to(tree.tflm)
        else "cmsis_nn/" + p.relative_to(tree.cmsis_nn).as_posix()
        for p in kernel_files
    ]
    return BuildResult(
        elf,
        map_path,
        core,
        board.machine,
        sizes,
        compiled,
        len(objects) - compiled,
        time.perf_counter() - start,
        kernels,
        tree.origin,
        rel,
        children_cpu_s() - cpu0,
    )


def clear_app_dir(app_dir: Path) -> None:
    """Remove what an earlier build left in an edgekd-made application folder."""
    for name in ("app.elf", "app.map", "libtflm.a", "main.o", "startup.o"):
        (app_dir / name).unlink(missing_ok=True)
    if app_dir.is_dir():
        for obj in app_dir.glob("*_model_data.o"):
            obj.unlink()
