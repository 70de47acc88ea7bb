"""Reading back the JSON files edgekd wrote (summaries, search specs, caches): a file cut short or
edited by hand is one line naming it, or, for a cache, simply recomputed; never a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError, first_line


def _no_constant(name: str) -> Any:
    # edgekd writes strict JSON (no NaN/Infinity): a file holding one was edited or written elsewhere
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: Python reads it as infinity
        raise ValueError(f"{text} is not a finite number")
    return value


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def _load_object(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = _loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, first_line(exc, 120)
    if not isinstance(data, dict):
        return None, f"it holds a {type(data).__name__}"
    return data, ""


def read_json_object(path: str | Path, fix: str, error: type[EdgekdError] = EdgekdError) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` "PATH is corrupt (why); FIX" otherwise."""
    data, why = _load_object(Path(path))
    if data is None:
        raise error(f"{path} is corrupt ({why}); {fix}")
    return data


def read_json_lines(path: str | Path, fix: str, error: type[EdgekdError] = EdgekdError) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file edgekd wrote, one per non-blank line; ``error``
    "PATH is corrupt (line N: why); FIX" otherwise, read as strictly as :func:`read_json_object`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path} is corrupt ({first_line(exc, 120)}); {fix}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = _loads(line)
        except (ValueError, RecursionError) as exc:
            raise error(f"{path} is corrupt (line {number}: {first_line(exc, 120)}); {fix}") from None
        if not isinstance(data, dict):
            raise error(f"{path} is corrupt (line {number} holds a {type(data).__name__}); {fix}")
        records.append(data)
    return records


def cached_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in the cache file ``path``, or None when it is missing or unreadable (the
    caller recomputes it and writes it again)."""
    path = Path(path)
    return _load_object(path)[0] if path.is_file() else None
