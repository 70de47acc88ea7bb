"""Child processes that never outlive their reason to run: the bench's measuring processes and
deploy's ssh/scp/rsync steps.

:func:`run_bounded` starts the command in a process group of its own and kills the whole group
(a shell's children included) when the time limit passes or when this process is stopped —
Ctrl-C, or SIGTERM once :func:`terminate_raises` is in place. On Linux the child also gets
``PR_SET_PDEATHSIG``, so even a parent killed with SIGKILL takes its measuring process with it.
Standard library only (the Raspberry Pi side uses it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class Terminated(BaseException):  # like KeyboardInterrupt: a request to stop, not an error
    """Raised in the main thread on SIGTERM, so that cleanups (``finally``, child kills) run."""


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGKILL when the parent dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the parent's cleanup still kills the group
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()


def run_bounded(
    argv: Sequence[str],
    timeout_s: float | None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion with captured text output, within ``timeout_s`` seconds.

    Raises :class:`subprocess.TimeoutExpired` after killing the process group when the limit
    passes; any exception here (KeyboardInterrupt, :class:`Terminated`) kills it too."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,  # a step that asks for input would wait forever
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: killed whole, children included
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except BaseException:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=5)  # reap it; output of a group member left holding the pipe is dropped
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated` instead of ending the
    process at once, so that child processes are killed and temporary files removed on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def worker_main(
    argv: Sequence[str],
    work: Callable[[dict[str, Any]], dict[str, Any]],
    stage: str | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """The child side of the worker protocol (``JOB.json RESULT.json``): run ``work(job)`` and write
    its result. An ``expected`` error becomes a failed result with its message; any other exception
    is a bug, kept with its traceback, so the parent reports it as one failed row and goes on."""
    import json
    import traceback

    from edgekd.atomic import write_json

    job_path, result_path = argv
    job = json.loads(Path(job_path).read_text())
    failed: dict[str, Any] = {"status": "failed", **({"stage": stage} if stage else {})}
    try:
        result = work(job)
    except expected as exc:
        result = {**failed, "reason": str(exc)[:400]}
    except Exception as exc:  # noqa: BLE001 - see the docstring: the row fails, the bench goes on
        result = {
            **failed,
            "reason": f"{type(exc).__name__}: {str(exc)[:300]}",
            "traceback": traceback.format_exc(),
        }
    write_json(result_path, result)
    return 0
