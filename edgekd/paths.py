"""Path safety: names read from files stay inside their folder, and writes never follow a link out.

Every reader of a bundle (verify, bench, deploy, predict) resolves the names its manifest holds
with :func:`member`, and every writer of a report folder (bench, deploy) checks it with
:func:`check_output_dir` before any work starts. A bundle is data copied from elsewhere: a name
like ``../../etc/passwd``, an absolute path, or a symlink planted in it must neither be read nor
be written through. Standard library only (the Raspberry Pi side uses it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path, PurePosixPath

from edgekd.errors import EdgekdError


class UnsafePathError(EdgekdError):
    """A name or folder that would lead outside the place it belongs to."""


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
        name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise UnsafePathError(f"{what}: {name!r} is not a plain relative path inside the folder (no '..', no absolute path)")
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


def _link_on_the_way(path: Path, stop: Path | None) -> Path | None:
    """The first existing symlink among ``path`` and its parents below ``stop`` (exclusive), if any."""
    for p in (path, *path.parents):
        if stop is not None and p == stop:
            return None
        if p.is_symlink():
            return p
    return None


def check_output_dir(path: str | Path, flag: str, inside: str | Path | None = None) -> Path:
    """Refuse, before any work, an output folder that cannot or must not be written.

    - ``path`` exists and is not a folder (a file, a device);
    - ``inside`` is given (a default output folder inside a bundle): no component below ``inside``
      down to ``path`` may be a symlink, since a planted link would redirect the writes (files in
      the folder are replaced by rename, which replaces a link there instead of following it);
    - the nearest existing folder is not writable (read-only place): probed by creating and
      removing a temporary file there, which also holds for root, who ignores permission bits.

    Nothing is created: a refused output leaves no empty folder behind. Returns ``path``."""
    path = Path(path)
    if inside is not None:
        link = _link_on_the_way(path, Path(inside))  # the bundle itself may be a link the user made
        if link is not None:
            raise UnsafePathError(f"{flag} {path}: {link} is a symbolic link; edgekd does not write through links in a bundle (remove it, or pass another {flag})")
    if path.exists() and not path.is_dir():
        raise UnsafePathError(f"{flag} {path} is an existing file, not a folder; pass a folder (it is created if missing)")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise UnsafePathError(f"{flag} {path}: {existing} is a file, so the folder cannot be made there")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgekd-probe.", dir=existing)
    except OSError as exc:
        raise UnsafePathError(f"{flag} {path} cannot be written: {existing}: {exc.strerror or exc} (pass {flag} with a writable place)") from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuse an output file that is a folder, or whose folder cannot be written (see
    :func:`check_output_dir`). An existing plain file is replaced atomically (a symlink there is
    replaced as a link, never written through)."""
    path = Path(path)
    if path.is_dir():
        raise UnsafePathError(f"{flag} {path} is a folder; pass a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."), flag)
    return path
