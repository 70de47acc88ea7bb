"""The one exception type that the CLI turns into a single clear line (no traceback).

Library code raises :class:`EdgekdError` for anything the *user* can fix: a wrong config key, a
missing file, a corrupt checkpoint, a model that does not fit its target. Bugs stay ordinary
exceptions so that they keep their traceback.
"""

from __future__ import annotations

import re


class EdgekdError(Exception):
    """A problem with the user's input, reported as one line by the CLI."""


class ConfigError(EdgekdError):
    """A config file or ``--set`` override that does not match the schema."""


class DataError(EdgekdError):
    """A dataset that is missing, empty or inconsistent."""


class CheckpointError(EdgekdError):
    """A checkpoint that is missing, corrupt or does not match the model/data."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def plain(text: str) -> str:
    """``text`` without terminal escape sequences (bold, colours) that third-party messages carry:
    an error line must read the same in a terminal, a log file and JSON."""
    return _ANSI.sub("", text)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (its type name when it has none), at most ``limit``
    characters: third-party errors often carry a whole stack or graph dump after line one."""
    text = plain(str(exc)).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def log_tail(text: str, lines: int, limit: int) -> str:
    """The last ``lines`` lines of a captured tool log on one line, at most ``limit`` characters."""
    return " | ".join(text.strip().splitlines()[-lines:])[:limit]
