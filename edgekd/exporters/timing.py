"""The uniform line every conversion logs: format, seconds, size, path."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edgekd.ui import log

F = TypeVar("F", bound=Callable[..., Any])


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


_shown_as: list[tuple[Path, Path]] = []  # (temporary folder, the folder it becomes)


@contextlib.contextmanager
def shown_as(tmp: Path, final: Path) -> Iterator[None]:
    """Log paths inside ``tmp`` as the paths they will have once the bundle is renamed into place."""
    _shown_as.append((Path(tmp), Path(final)))
    try:
        yield
    finally:
        _shown_as.pop()


_recorders: list[list[dict[str, Any]]] = []


@contextlib.contextmanager
def recorded_conversions() -> Iterator[list[dict[str, Any]]]:
    """Collect the conversions made inside the block, one record per call:
    ``{"function", "seconds", "outputs": {format: path}}`` (for benchmarks that compare converters)."""
    records: list[dict[str, Any]] = []
    _recorders.append(records)
    try:
        yield records
    finally:
        _recorders.remove(records)


def log_conversion(fmt: str, seconds: float, path: Path) -> None:
    size = human_bytes(path.stat().st_size) if path.is_file() else "?"
    shown = path
    for tmp, final in _shown_as:
        if path.is_relative_to(tmp):
            shown = final / path.relative_to(tmp)
    log(f"export  {fmt:<16} {seconds:7.2f} s  {size:>9}  {shown}")


def conversion(fmt: str | None = None) -> Callable[[F], F]:
    """Decorate a source→target function returning the written path, or a {format: path} dict
    when one run of a converter writes several files (they share its time)."""

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = func(*args, **kwargs)
            seconds = time.perf_counter() - start
            outputs = result if isinstance(result, dict) else {fmt or func.__name__.rsplit("_to_", 1)[-1]: result}
            for name, path in outputs.items():
                log_conversion(name, seconds, Path(path))
            for records in _recorders:
                records.append(
                    {"function": func.__name__, "seconds": seconds, "outputs": {k: Path(v) for k, v in outputs.items()}}
                )
            return result

        return wrapper  # type: ignore[return-value]

    return deco
