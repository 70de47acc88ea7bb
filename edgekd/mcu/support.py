"""Does an int8 (or 16x8) .tflite file run on TensorFlow Lite Micro? Every op it lacks, and the flash it needs.

TFLite Micro names only the first op it has no kernel for. To name them all, that op is replaced
in a copy of the file by one TFLM has (RELU) and the copy is resolved again, until none is
missing. What the export table's MCU column shows. Runs in a process of its own
(:func:`edgekd.benchmark.targets.run_worker`): a runtime crash fails the check, not the export.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekd.procs import worker_main

_STAND_IN = "RELU"  # an op every TFLM build has, code < 127: what a missing op is replaced by


def missing_ops(path: str | Path) -> list[str]:
    """The ops of ``path`` that TFLite Micro has no kernel for (empty: it resolves them all)."""
    from edgekd.runtimes.tflm_runner import TflmUnsupported, open_interpreter
    from edgekd.tflite_file import read_tflite, with_op_replaced

    path = Path(path)
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-tflm-") as tmp:
        current = path
        for _ in range(64):  # a model has far fewer distinct ops; a bound against a loop
            try:
                open_interpreter(current)
                return missing
            except TflmUnsupported as exc:
                text = str(exc)
                if "has no kernel for" not in text:
                    if current == path:
                        raise  # every op resolves but a kernel refuses the file (a tensor type it lacks)
                    return missing  # resolved every op; what fails now is preparing the stand-ins
                op = text.split("has no kernel for ", 1)[1].split()[0]
                if op in missing or op == _STAND_IN:
                    return missing
                missing.append(op)
                data = with_op_replaced(current.read_bytes(), read_tflite(current), op, _STAND_IN)
                current = Path(tmp) / f"step{len(missing)}.tflite"
                current.write_bytes(data)
    return missing


def check(job: dict[str, Any]) -> dict[str, Any]:
    from edgekd.errors import first_line
    from edgekd.mcu.estimate import flash_bytes
    from edgekd.runtimes.tflm_runner import TflmUnsupported
    from edgekd.tflite_file import read_tflite

    model = read_tflite(job["file"])
    try:
        missing = missing_ops(job["file"])
    except TflmUnsupported as exc:  # e.g. a 16x8 file with an op TFLM has no int16 kernel for
        return {
            "status": "ok",
            "missing_ops": [],
            "ok": False,
            "error": first_line(exc, 160),
            "flash_bytes": flash_bytes(model),
        }
    except ImportError:
        return {
            "status": "skipped",
            "reason": "tflite-micro is not installed (pip install 'edgekd[mcu]')",
            "flash_bytes": flash_bytes(model),
        }
    return {"status": "ok", "missing_ops": missing, "ok": not missing, "flash_bytes": flash_bytes(model)}


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json``, as :func:`edgekd.benchmark.worker.main`."""
    return worker_main(argv, check)  # a file TFLM or the reader cannot take: the cell says so


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
