"""The one exception type that the CLI turns into a single clear line (no traceback).

Library code raises :class:`EdgekdError` for anything the *user* can fix: a wrong config key, a
missing file, a corrupt checkpoint, a model that does not fit its target. Bugs stay ordinary
exceptions so that they keep their traceback.
"""

from __future__ import annotations

import re

# terminal escape sequences (colors, cursor moves) and the other control characters: third-party
# messages carry them, and a file name can too; neither belongs in a one-line error
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class EdgekdError(Exception):
    """A problem with the user's input, reported as one line by the CLI."""


class ConfigError(EdgekdError):
    """A config file or ``--set`` override that does not match the schema."""


class DataError(EdgekdError):
    """A dataset that is missing, empty or inconsistent."""


class ArgumentError(EdgekdError):
    """A library function called with an argument of the wrong kind (an int where a path goes)."""


class CheckpointError(EdgekdError):
    """A checkpoint that is missing, corrupt or does not match the model/data."""


def one_line(text: str) -> str:
    """``text`` as one printable line: escape sequences dropped, control characters (newlines,
    tabs) turned into single spaces."""
    return _CONTROL.sub(" ", _ESCAPES.sub("", text)).strip()


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (its type name when it has none), at most ``limit``
    characters, without escape codes: third-party errors often carry a whole stack or graph dump
    after line one, and colors."""
    text = _ESCAPES.sub("", str(exc)).strip()
    return one_line(text.splitlines()[0] if text else type(exc).__name__)[:limit]


def typed_first_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc`` (:func:`first_line`; the type name alone when that is all)."""
    line = first_line(exc)
    return line if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"


def log_tail(text: str, lines: int, limit: int) -> str:
    """The last ``lines`` lines of a captured tool log on one line, at most ``limit`` characters."""
    return " | ".join(text.strip().splitlines()[-lines:])[:limit]
