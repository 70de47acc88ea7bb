"""Capture what C/C++ libraries write to file descriptors 1 and 2 (TensorFlow, LiteRT, TFLite Micro).

Python-level redirection (``contextlib.redirect_stdout``) cannot see native writes, so the
descriptors themselves are pointed at a temporary file for the duration of the block.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def captured_fds(fds: tuple[int, ...] = (1, 2)) -> Iterator[Path]:
    """Redirect ``fds`` into a temporary file; yields its path (deleted afterwards)."""
    fd, name = tempfile.mkstemp(prefix="edgekd-capture-", suffix=".log")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(f) for f in fds]
    try:
        for f in fds:
            os.dup2(fd, f)
        yield Path(name)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for f, s in zip(fds, saved):
            os.dup2(s, f)
            os.close(s)
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
