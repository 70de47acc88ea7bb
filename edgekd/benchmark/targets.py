"""Bench targets: where the models of a bundle run. One registry, one class per target.

``cpu`` is this machine. A target turns a :class:`Job` (one model file and how to measure it) into
a row's measurements and describes the host it measured on; the orchestration (verification, eval
data, ratios, report, gate) is shared in :mod:`edgekd.benchmark.run`. A Raspberry Pi or MCU target
is one more ``@TARGETS.register("…")`` class here (listed in the registry's providers).
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
from edgekd.benchmark.host import host_info, usable_cores
from edgekd.registry import Registry

TARGETS: Registry[type[BenchTarget]] = Registry("bench target", providers=["edgekd.benchmark.targets"])

# Thread-pool sizes read from the environment by OpenMP, MKL, OpenBLAS and friends when a runtime
# loads; set for the measuring process so that no library quietly uses every core.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# The measuring process imports the edgekd that launched it, whatever the current directory or
# install holds: the package's folder replaces the working directory that ``-c`` puts first on
# sys.path (nothing is replaced where -P / PYTHONSAFEPATH left it out).
_BOOT = (
    "import sys; root = sys.argv[1]; cwd = int(sys.path[:1] == ['']); "
    "sys.path[0:cwd] = [] if root in sys.path else [root]; "
    "from edgekd.benchmark.worker import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass(frozen=True)
class Job:
    """One model file to measure, and how."""

    model: str  # role: student | teacher | baseline
    format: str  # pytorch | onnx | tflite_fp32 | tflite_int8 | …
    file: str  # absolute path of the model file
    eval: str  # npz with uint8 NHWC "images" and "labels"
    num_classes: int
    threads: int
    runs: int
    warmup: int
    input: dict[str, Any] = field(default_factory=dict)  # the manifest's input entry (shape, layout, dtype)


class BenchTarget(ABC):
    """A place to run models. Subclasses set ``name`` and implement ``host`` and ``measure``."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads if threads is not None else self.default_threads()

    def default_threads(self) -> int:
        return 1

    def unsupported(self, fmt: str) -> str | None:
        """Why this target cannot run ``fmt`` (its row is skipped), or None."""
        return None

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

    def default_threads(self) -> int:
        # every core this process may use: how an application on a dedicated device would run
        return usable_cores()

    def host(self) -> dict[str, Any]:
        return host_info()

    def measure(self, job: Job) -> dict[str, Any]:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this edgekd package
        env = {**os.environ, **{k: str(job.threads) for k in THREAD_ENV}}
        with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
            job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
            write_json(job_path, asdict(job))
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", _BOOT, root, str(job_path), str(result_path)],
                    env=env,
                    capture_output=True,  # runtimes print banners; a crash's last lines go into the reason
                    text=True,
                    errors="replace",
                    timeout=self.timeout_s,
                )
            except subprocess.TimeoutExpired:
                return {"status": "failed", "stage": "run", "reason": f"no result after {self.timeout_s:.0f} s (hung runtime?)"}
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
