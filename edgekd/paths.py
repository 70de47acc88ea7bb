"""Path safety for names read from files: they stay inside their folder.

Every reader of a bundle (verify, bench, deploy, predict) resolves the names its manifest holds
with :func:`member` (through :func:`edgekd.bundle.bundle_file`), and :func:`escaping_links` finds
symlinks planted in a folder that lead out of it. A bundle is data copied from elsewhere: a name
like ``../../etc/passwd``, an absolute path, or a symlink in it must not be read or copied.
Where edgekd may write (and that it never writes through such a link) is :mod:`edgekd.outputs`;
:func:`input_file` checks a file the user names as input (an image, a model) before it is read.
Standard library only (the Raspberry Pi side uses it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from edgekd.errors import ArgumentError, EdgekdError


class UnsafePathError(EdgekdError):
    """A name or folder that would lead outside the place it belongs to."""


def as_path(value: object, what: str, optional: bool = False) -> Path | None:
    """``value`` as a Path when it is a non-empty str or os.PathLike (None passes when
    ``optional``); one :class:`ArgumentError` line otherwise, instead of a TypeError from deep
    inside pathlib when the library is called with an int or a dict where a path goes."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes) and os.fspath(value) != "":
        return Path(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ArgumentError(f"{what} must be a path (a str or pathlib.Path), got {type(value).__name__} {shown}")


def input_file(path: str | Path, what: str, error: type[EdgekdError] = EdgekdError) -> Path:
    """``path`` if it is a regular file (a symlink to one included), else one ``error`` line
    saying what it is: ``WHAT PATH: no such file``, or ``WHAT PATH is a folder`` / ``a FIFO`` /
    ``a character device``, not a regular file. A device or FIFO is not missing, and reading
    one never ends (/dev/zero) or waits for a writer."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except OSError as exc:  # permission denied on the way, a loop of links, a name too long
        raise error(f"{what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return path
    raise error(f"{what} {path} is {_kind(mode)}, not a regular file")


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def plain_name(name: object, what: str) -> str:
    """``name`` if it is a plain relative POSIX path: a non-empty str, not absolute, no ``..``,
    ``.`` or empty parts, no backslash or NUL (a Windows-style path would mean something else on
    another machine). ``what`` says where the name came from, for the error line."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{what}: a file name must be a non-empty string, got {name!r}")
    parts = name.split("/")
    bad = (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise UnsafePathError(
            f"{what}: {name!r} is not a plain relative path inside the folder (no '..', no absolute path)"
        )
    return name


def member(root: str | Path, name: object, what: str) -> Path:
    """``root / name`` for a name read from a file in ``root``, refused unless it is a plain
    relative path whose every existing component, symlinks followed, stays inside ``root``."""
    root = Path(root)
    rel = PurePosixPath(plain_name(name, what))
    real_root = root.resolve()
    path = root.joinpath(*rel.parts)
    if not _within(path.resolve(), real_root):
        raise UnsafePathError(f"{what}: {name!r} is a symbolic link (or lies under one) that leads out of {root}")
    return path


def escaping_links(root: str | Path) -> list[str]:
    """Relative paths of the symlinks under ``root`` (not followed) whose target lies outside it,
    or that dangle: copying the folder (scp -r) or reading it by name would leave ``root``."""
    root = Path(root)
    real_root = root.resolve()
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for entry in (*dirs, *files):
            path = Path(folder) / entry
            if path.is_symlink():
                target = path.resolve()
                if not _within(target, real_root) or not target.exists():
                    found.append(path.relative_to(root).as_posix())
    return sorted(found)


def is_under(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` lies in ``root`` by name (nothing resolved: a link on the way is exactly
    what the caller wants to find)."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return _within(path, root)
