"""Terminal output: log lines, tables and progress bars.

Uses rich when it is installed and falls back to plain text when it is not (the Raspberry Pi side
installs only numpy + the TFLite runtime). Log lines and progress go to stderr; tables, which are
results, go to stdout so that ``edgekd … > report.txt`` keeps them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

try:  # optional: pretty output
    import rich.console
    import rich.markup
    import rich.progress
    import rich.table

    _HAS_RICH = True
except ImportError:  # pragma: no cover - exercised on the Pi side
    _HAS_RICH = False

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def log(message: str) -> None:
    """One progress line on stderr (suppressed by --quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def render_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table (also what goes into Markdown-less logs and tests)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join(out)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A results table on stdout: rich when available, plain text otherwise."""
    if _HAS_RICH:
        # cells are data, not rich markup: "pip install 'edgekd[litert]'" must not lose "[litert]"
        table = rich.table.Table(title=rich.markup.escape(title), title_justify="left")
        for i, col in enumerate(columns):
            table.add_column(rich.markup.escape(col), justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in rows:
            table.add_row(*[rich.markup.escape(_fmt(v)) for v in row])
        # a terminal's own width; 160 columns when piped to a file or a CI log
        width = None if sys.stdout.isatty() else 160
        rich.console.Console(width=width).print(table)
    else:
        print(render_table(title, columns, rows), flush=True)


class _Bar:
    """A progress bar with a live postfix (loss/acc); a no-op when stderr is not a terminal."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def update(self, advance: int = 1, **postfix: Any) -> None:
        if self._progress is not None:
            text = " ".join(f"{k}={_fmt(v)}" for k, v in postfix.items())
            self._progress.update(self._task, advance=advance, postfix=text)


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[_Bar]:
    if _quiet or not _HAS_RICH or not sys.stderr.isatty():
        yield _Bar(None, None)
        return
    columns = [
        rich.progress.TextColumn("{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TimeElapsedColumn(),
        rich.progress.TextColumn("{task.fields[postfix]}"),
    ]
    with rich.progress.Progress(*columns, console=rich.console.Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total, postfix="")
        yield _Bar(bar, task)


class Timer:
    """Monotonic wall-clock timer (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
