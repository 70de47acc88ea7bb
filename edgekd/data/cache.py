"""The cache folder for extracted archives and decoded image arrays."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root(configured: str | None = None) -> Path:
    root = configured or os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd"
    return Path(root).expanduser()


def fingerprint(*parts: object) -> str:
    """A short stable key for cache entries."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
