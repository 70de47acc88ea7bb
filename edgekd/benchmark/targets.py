"""Bench targets: where the models of a bundle run. One registry, one class per target.

``cpu`` is this machine. A target turns a :class:`Job` (one model file and how to measure it) into
a row's measurements and describes the host it measured on; the orchestration (verification, eval
data, ratios, report, gate) is shared in :mod:`edgekd.benchmark.run`.

- ``cpu``: this machine, every runtime installed here;
- ``rpi``: a Raspberry Pi, TFLite with XNNPACK at 1 and 4 threads, board/clock/thermal state
  before and after (numpy + ai-edge-litert only);
- ``mcu``: microcontroller class: TFLite Micro on this host (op support, arena, accuracy) with
  flash and latency *estimated* per MCU profile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd.atomic import write_json
from edgekd.benchmark.errors import BenchError
from edgekd.benchmark.host import host_info, usable_cores
from edgekd.benchmark.row import LATENCY_FIELDS
from edgekd.limits import MAX_KB, check_number, check_threads
from edgekd.procs import run_bounded
from edgekd.registry import Registry

TARGETS: Registry[type[BenchTarget]] = Registry("bench target", providers=["edgekd.benchmark.targets"])

# Thread-pool sizes read from the environment by OpenMP, MKL, OpenBLAS and friends when a runtime
# loads; set for the measuring process so that no library quietly uses every core.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# The measuring process imports the edgekd that launched it, whatever the current directory or
# install holds: the package's folder replaces the working directory that ``-c`` puts first on
# sys.path (nothing is replaced where -P / PYTHONSAFEPATH left it out).
_BOOT = (
    "import sys; root = sys.argv[1]; cwd = int(sys.path[:1] == ['']); "
    "sys.path[0:cwd] = [] if root in sys.path else [root]; "
    "from importlib import import_module; sys.exit(import_module(sys.argv[2]).main(sys.argv[3:]))"
)


@dataclass(frozen=True)
class Job:
    """One model file to measure, and how."""

    model: str  # role: student | teacher | baseline
    format: str  # pytorch | onnx | tflite_fp32 | tflite_int8 | …
    file: str  # absolute path of the model file
    eval: (
        str | None
    )  # npz with uint8 NHWC "images" and "labels" (segmentation: "masks"); None: a lone model, no accuracy
    num_classes: int
    threads: int
    runs: int
    warmup: int
    input: dict[str, Any] = field(default_factory=dict)  # the manifest's input entry (shape, layout, dtype)
    task: str = "classification"  # the bundle's task: what the eval targets are and which metric is "accuracy"
    runner: str | None = None  # "module:Class" that opens the file (from edgekd.formats), for the measuring process
    # the input/output dtype the bundle's format says the file has (Format.io_dtype), checked against
    # the file; None: not checked (a lone --model file, whose format was read from the file itself)
    io_dtype: str | None = None


class BenchTarget(ABC):
    """A place to run models. Subclasses set ``name`` and implement ``host`` and ``measure``."""

    name: ClassVar[str]
    description: ClassVar[str]
    # bench() options this target takes beyond threads (force, mcu, flash_kb, ram_kb); giving one
    # that the chosen target does not take is an error, not silently ignored
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads if threads is not None else self.default_threads()

    def default_threads(self) -> int:
        return 1

    def thread_counts(self) -> tuple[int, ...]:
        """Thread counts each model is measured at (one row each)."""
        return (self.threads,)

    def unsupported(self, fmt: str) -> str | None:
        """Why this target cannot run ``fmt`` (its row is skipped), or None."""
        from edgekd.formats import find_format

        found = find_format(fmt)
        if found is None:
            return f"format {fmt!r} is not known to this edgekd"
        if not found.is_model:
            return f"{fmt} files are not models a runner opens"
        return None

    def conditions(self) -> dict[str, Any] | None:
        """State that can change during a run and spoil it (temperature, clocks), read before and after."""
        return None

    def warnings(self, host: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
        """Report notes about how far the measurements can be trusted."""
        return []

    def artifacts(
        self,
        out_dir: Path,
        results: list[dict[str, Any]],
        files: dict[str, Path],
        eval_path: Path | None,
        task: str = "classification",
    ) -> dict[str, str]:
        """Extra files written next to the report (name → path). ``files``: row file → model path."""
        return {}

    def report_folder(self) -> str:
        """The default report folder's name inside ``BUNDLE/bench/``: one per device, so that the
        reports of different devices sit side by side instead of overwriting each other."""
        return self.name

    @abstractmethod
    def host(self) -> dict[str, Any]:
        """The machine the models run on (CPU, cores, governor, OS, runtime versions …)."""

    @abstractmethod
    def measure(self, job: Job) -> dict[str, Any]:
        """``{"status": "ok" | "skipped" | "failed", …}`` with latency, accuracy and memory when ok."""


@TARGETS.register("cpu")
class CpuTarget(BenchTarget):
    """This machine's CPU, each model in a fresh Python process."""

    name = "cpu"
    description = "this machine's CPU (every runtime installed here)"
    timeout_s: ClassVar[float] = 1800.0  # per model: a hung runtime fails its row instead of the bench

    def __init__(self, threads: int | None = None) -> None:
        # more threads than usable cores measure the scheduler, not the model
        check_threads("--threads", threads, usable_cores(), error=BenchError)
        super().__init__(threads)

    def default_threads(self) -> int:
        # every core this process may use: how an application on a dedicated device would run
        return usable_cores()

    def host(self) -> dict[str, Any]:
        return host_info()

    def measure(self, job: Job) -> dict[str, Any]:
        env = {k: str(job.threads) for k in THREAD_ENV}
        return run_worker(asdict(job), "edgekd.benchmark.worker", env, self.timeout_s)


def run_worker(
    job: dict[str, Any], module: str, env: dict[str, str] | None = None, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """``module.main([JOB.json, RESULT.json])`` in a fresh Python process; its result dict, or a
    failed row when the process dies or hangs."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this edgekd package
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        write_json(job_path, job)
        try:
            # its own process group, killed with it when the bench is stopped or times out; output
            # captured: runtimes print banners, and a crash's last lines go into the reason
            proc = run_bounded(
                [sys.executable, "-c", _BOOT, root, module, str(job_path), str(result_path)],
                timeout_s,
                {**os.environ, **(env or {})},
            )
        except subprocess.TimeoutExpired:
            return {"status": "failed", "stage": "run", "reason": f"no result after {timeout_s:.0f} s (hung runtime?)"}
        if proc.returncode == 0 and result_path.is_file():
            import json

            return json.loads(result_path.read_text())
    return {"status": "failed", "stage": "run", "reason": _died(proc)}


def _died(proc: subprocess.CompletedProcess) -> str:
    """One line for a measuring process that ended without a result (a crash inside a runtime)."""
    code = proc.returncode
    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
    return f"the measuring process died ({how}): {tail[0][:300]}"


@TARGETS.register("rpi")
class RpiTarget(CpuTarget):
    """A Raspberry Pi (ARM64, Raspberry Pi OS): the TFLite models with XNNPACK at 1 and 4 threads,
    board, clocks, temperature and throttling before and after. Needs numpy + ai-edge-litert only."""

    name = "rpi"
    description = "Raspberry Pi: TFLite (XNNPACK) at 1 and 4 threads, with board, clock and thermal state"
    options = ("force",)
    # a Pi 3/4/5 and Zero 2 have 4 cores: one thread (what a single-stream app gets by default) and all
    DEFAULT_THREADS = (1, 4)

    def __init__(self, threads: int | None = None, force: bool = False) -> None:
        from edgekd.benchmark import pi

        if not force and not pi.is_raspberry_pi():
            model = pi.board_model()
            seen = f"board {model!r}" if model else "no /proc/device-tree/model"
            raise BenchError(
                f"this machine is not a Raspberry Pi ({seen}); use --device cpu to bench it, or --force to run the Pi "
                "path anyway"
            )
        check_threads(
            "--threads", threads, usable_cores(), error=BenchError
        )  # the defaults are not checked: (1, 4) is the Pi's
        self.forced = force
        self._given = threads
        BenchTarget.__init__(self, threads if threads is not None else self.DEFAULT_THREADS[-1])

    def thread_counts(self) -> tuple[int, ...]:
        return (self._given,) if self._given is not None else self.DEFAULT_THREADS

    def report_folder(self) -> str:
        import re
        import socket

        return "rpi-" + (re.sub(r"[^\w.-]", "_", socket.gethostname()) or "host")  # several Pis, one bundle

    def unsupported(self, fmt: str) -> str | None:
        from edgekd.formats import find_format

        found = find_format(fmt)
        if found is None or found.runtime != "litert":
            return "the Pi bench runs the TFLite models only (the Pi install has no torch or ONNX Runtime)"
        return None

    def host(self) -> dict[str, Any]:
        from edgekd.benchmark import pi

        host = host_info()
        host["board"] = pi.board_model()
        host["delegate"] = "XNNPACK"  # LiteRT's default CPU delegate; the runner always sets num_threads
        host["forced"] = self.forced  # True: --force on a machine that may not be a Pi
        host["emulated"] = pi.emulation()
        return host

    def conditions(self) -> dict[str, Any]:
        from edgekd.benchmark import pi

        return pi.snapshot()

    def warnings(self, host: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
        from edgekd.benchmark import pi

        out = pi.throttle_warnings(before or {}, after or {})
        if host.get("emulated"):
            out.insert(
                0,
                f"EMULATED ({host['emulated']}): run times are of an emulator, not latencies of a Pi; "
                "they are kept under emulated, never in the latency fields (peak RSS includes the emulator)",
            )
        elif self.forced and not (host.get("board") or "").startswith("Raspberry Pi"):
            out.insert(
                0, f"--force: the Pi path ran on {host.get('cpu')} ({host.get('machine')}), not on a Raspberry Pi"
            )
        return out

    def measure(self, job: Job) -> dict[str, Any]:
        result = super().measure(job)
        if result.get("status") == "ok" and os.environ.get("EDGEKD_EMULATION"):
            # under qemu-user a run time measures the emulator: keep it out of every latency field
            result["emulated"] = {k: result.pop(k) for k in LATENCY_FIELDS}
            result.update(throughput_per_s=None, spread_frac=None, cv_frac=None, noisy=None)
        return result


@TARGETS.register("mcu")
class McuTarget(BenchTarget):
    """Microcontroller class: each int8 model through TFLite Micro on this host (every op supported?
    tensor arena used, accuracy with TFLM kernels), flash = model + runtime estimate, and a latency
    estimate per MCU profile from the model's MACs and op mix. TFLM's host timings are not measured:
    reference kernels on x86 say nothing about a Cortex-M."""

    name = "mcu"
    description = (
        "microcontroller class: TFLite Micro ops/arena/accuracy on this host, flash and latency estimated per MCU "
        "profile"
    )
    options = ("mcu", "flash_kb", "ram_kb", "emulate")
    timeout_s: ClassVar[float] = 1800.0

    def __init__(
        self,
        threads: int | None = None,
        mcu: str | None = None,
        flash_kb: float | None = None,
        ram_kb: float | None = None,
        emulate: str | None = None,
    ) -> None:
        from edgekd.mcu.profiles import PROFILES

        if threads not in (None, 1):
            raise BenchError(
                f"--threads {threads}: TFLite Micro runs on one core; leave --threads out for --device mcu"
            )
        for flag, value in (("--flash-kb", flash_kb), ("--ram-kb", ram_kb)):
            check_number(flag, value, low=0, low_open=True, high=MAX_KB, optional=True, error=BenchError)
        self.profile = PROFILES.get(mcu) if mcu is not None else None
        self.flash_kb = flash_kb if flash_kb is not None else (self.profile.flash_kb if self.profile else None)
        self.ram_kb = ram_kb if ram_kb is not None else (self.profile.ram_kb if self.profile else None)
        self.emulate = emulate
        if emulate is not None:
            from edgekd.mcu import toolchain

            toolchain.BOARDS.get(emulate)  # did-you-mean on a wrong core name
            for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm"):
                toolchain.require(tool)  # one line naming the packages to install
        super().__init__(1)

    def unsupported(self, fmt: str) -> str | None:
        from edgekd.formats import find_format

        found = find_format(fmt)
        if fmt == "tflite_int16x8":
            return (
                "MCU targets run full-integer int8 TFLite models only (tflite_int16x8 has int16 activations: "
                "TFLite Micro has 16x8 kernels for some ops only, and the MCU profiles, estimates and app are int8)"
            )
        if found is None or found.runtime != "litert" or not found.integer_io:
            return f"MCU targets run full-integer int8 TFLite models only ({fmt} is not one: export with tflite_int8)"
        return None

    def host(self) -> dict[str, Any]:
        from edgekd.mcu import profiles

        host = host_info()
        try:
            from edgekd.runtimes.tflm_runner import tflm_version

            host["packages"]["tflite-micro"] = tflm_version().split()[-1]
        except Exception:  # noqa: BLE001 - not installed: the rows say so
            pass
        host["mcu_profile"] = self.profile.name if self.profile else None
        host["budget"] = {"flash_kb": self.flash_kb, "ram_kb": self.ram_kb}
        host["estimate"] = {
            "conv_cycles_per_mac_m7": profiles.CONV_CYCLES_PER_MAC,
            "calibrated_on": [r.board for r in profiles.MLPERF_TINY_RESNET8 if r.role == "fit"],
        }
        return host

    def measure(self, job: Job) -> dict[str, Any]:
        from edgekd.mcu import estimate
        from edgekd.tflite_file import TfliteFileError, read_tflite

        try:
            model = read_tflite(job.file)
        except TfliteFileError as exc:  # this row fails; the other models still run
            return {"status": "failed", "stage": "load", "reason": str(exc), "tflm": {"ops_supported": None}}
        if not model.is_int8:  # the file decides, not its name or manifest entry
            reason = (
                f"{Path(job.file).name} is a float model: MCU targets run full-integer int8 TFLite models only (export "
                "with tflite_int8)"
            )
            return {
                "status": "failed",
                "stage": "unsupported",
                "reason": reason,
                "unsupported": True,
                "tflm": {"ops_supported": False, "ops": model.op_names},
            }
        result = run_worker(asdict(job), "edgekd.benchmark.mcu_worker", None, self.timeout_s)
        tflm = result.setdefault("tflm", {})
        tflm["flash_bytes"] = estimate.flash_bytes(model)
        tflm["model_bytes"] = model.size_bytes
        tflm["runtime_flash_bytes"] = estimate.runtime_flash_bytes(model)
        tflm["ops"] = model.op_names
        tflm["macs"] = model.total_macs
        tflm.setdefault("accuracy_frac", result.get("accuracy_frac"))
        if tflm.get("ops_supported") is False:  # TFLM has no kernel for an op: the target cannot run it
            result.update(
                unsupported=True, reason=f"{result.get('reason')}; the model's ops: {', '.join(model.op_names)}"
            )
        if result.get("status") == "ok":
            tflm["budget"] = self.budget(tflm)
            if tflm["budget"] is not None and not tflm["budget"]["fits"]:
                result.update(status="failed", stage="fit", reason=tflm["budget"]["message"], unsupported=True)
        if result.get("status") == "ok":  # a latency estimate only for a model that runs and fits
            tflm["est_latency_us"] = {name: round(ms * 1e3, 3) for name, ms in estimate.estimates_ms(model).items()}
            if self.emulate:
                self.run_emulated(job, result)
        return result

    def run_emulated(self, job: Job, result: dict[str, Any]) -> None:
        """Build the app for ``self.emulate``, run it on QEMU (:mod:`edgekd.mcu.app`, own process);
        any int8 output that differs from the host TFLM's fails the row."""
        from edgekd.bundle import sha256_file
        from edgekd.data.cache import cache_root
        from edgekd.tasks import get_task

        out = cache_root() / "mcu" / "app" / f"{sha256_file(job.file)[:16]}-{self.emulate}"
        emu = run_worker(
            {
                "file": str(job.file),
                "eval": job.eval,
                "targets_key": get_task(job.task).targets_key,
                "core": self.emulate,
                "out": str(out),
            },
            "edgekd.mcu.app",
            None,
            self.timeout_s,
        )
        keep = (
            "core",
            "board",
            "flash_bytes",
            "ram_bytes",
            "profiler_bytes",
            "sections",
            "build_s",
            "compiled",
            "cached",
            "kernels",
            "arena_host_bytes",
            "emulated",
            "est_cycles",
            "bit_exact",
            "problems",
            "app_self_check",
            "elf",
        )
        result["tflm"]["emulated"] = {k: emu[k] for k in keep if k in emu} | {
            "status": emu.get("status"),
            "reason": emu.get("reason"),
        }
        if emu.get("status") != "ok":
            result.update(
                status="failed", stage=emu.get("stage", "emulate"), reason=emu.get("reason", "the emulated run failed")
            )

    def budget(self, tflm: dict[str, Any]) -> dict[str, Any] | None:
        """Does the model fit the flash/RAM budget? None when no budget was given."""
        if self.flash_kb is None and self.ram_kb is None:
            return None
        over = []
        flash_kb = tflm["flash_bytes"] / 1024
        if self.flash_kb is not None and flash_kb > self.flash_kb:
            over.append(
                f"flash {flash_kb:,.1f} KB (model {tflm['model_bytes'] / 1024:,.1f} + runtime "
                f"≈{tflm['runtime_flash_bytes'] / 1024:,.0f}) > {self.flash_kb:,g} KB by "
                f"{flash_kb - self.flash_kb:,.1f} KB ({tflm['flash_bytes'] - int(self.flash_kb * 1024):,} bytes)"
            )
        if self.ram_kb is not None and tflm.get("arena_bytes") is not None:
            ram_kb = tflm["arena_bytes"] / 1024
            if ram_kb > self.ram_kb:
                over.append(
                    f"RAM (tensor arena) {ram_kb:,.1f} KB > {self.ram_kb:,g} KB by {ram_kb - self.ram_kb:,.1f} KB "
                    f"({tflm['arena_bytes'] - int(self.ram_kb * 1024):,} bytes)"
                )
        where = self.profile.name if self.profile else "the budget"
        return {
            "profile": self.profile.name if self.profile else None,
            "flash_kb": self.flash_kb,
            "ram_kb": self.ram_kb,
            "fits": not over,
            "message": f"does not fit {where}: {'; '.join(over)}" if over else f"fits {where}",
        }

    def warnings(self, host: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
        return [
            "MCU latencies are ESTIMATES from MACs and op mix per profile (CMSIS-NN-class kernels, calibrated on one "
            "published MLPerf Tiny figure; see edgekd/mcu/profiles.py), not measurements; TFLite Micro ran here on x86 "
            "with reference kernels only to check ops, arena and accuracy",
            "arena: measured by TFLM's recording allocator on this 64-bit host; a 32-bit MCU needs slightly less "
            "(smaller per-tensor structs); flash: model + an estimate of the TFLM runtime and kernels",
        ] + (
            [
                f"--emulate {self.emulate}: the app was built with TFLite Micro + CMSIS-NN and run on QEMU; "
                "instructions are counted "
                "(-icount), cycles = instructions × a per-core factor (edgekd.mcu.cpi) and stand for TFLM + CMSIS-NN, "
                "while the "
                "per-profile estimates above are fitted on the fastest published submissions (vendor runtimes); "
                "flash/RAM from the linker map",
            ]
            if self.emulate
            else []
        )

    def artifacts(
        self,
        out_dir: Path,
        results: list[dict[str, Any]],
        files: dict[str, Path],
        eval_path: Path | None,
        task: str = "classification",
    ) -> dict[str, str]:
        """``<stem>_tflm_config.h`` per int8 model that runs in TFLM: what deploy/mcu/main.cc includes,
        with an eval image the int8 model classifies correctly and the host TFLM's int8 output for it
        (:mod:`edgekd.mcu.hostref`, in its own process), which the app checks value for value."""
        from edgekd.mcu.codegen import Sample, write_app_config
        from edgekd.tasks import get_task

        written = {}
        for row in results:
            tflm = row.get("tflm") or {}
            if row["status"] == "ok" and tflm.get("arena_bytes"):
                samples: list[Sample] = []
                if eval_path is not None:
                    job = {
                        "file": str(files[row["file"]]),
                        "eval": str(eval_path),
                        "targets_key": get_task(task).targets_key,
                        "count": 1,
                    }
                    ref = run_worker(job, "edgekd.mcu.hostref", None, self.timeout_s)
                    samples = [Sample(**s) for s in ref.get("samples", [])]
                written[f"tflm_config:{row['file']}"] = str(
                    write_app_config(files[row["file"]], tflm, out_dir, samples)
                )
        return written
