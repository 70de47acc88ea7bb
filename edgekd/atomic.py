"""Atomic writes: a file or folder is either the old one or the complete new one, never half.

Everything is written to a temporary sibling first (same filesystem, so the final ``os.replace`` is
atomic), flushed and fsynced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_mode(base: int) -> int:
    """The mode a normally created file/folder would get (mkstemp/mkdtemp use 0600/0700)."""
    return base & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _plain_mode(0o666))
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def non_finite_at(obj: Any, where: str = "") -> str | None:
    """The key path of the first NaN/inf in ``obj`` (None when there is none)."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "<top>")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = non_finite_at(value, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found is not None:
            return found
    return None


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON: NaN and ±inf are refused (``json`` would write bare ``NaN``, which no JSON
    reader accepts), naming the key that holds one. Every JSON file edgekd writes goes through here."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False)
    except ValueError:
        raise ValueError(f"refusing to write non-finite number at {non_finite_at(obj)} as JSON") from None


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json_text(obj) + "\n")


def write_json_lines(path: str | Path, records: Any) -> None:
    """One strict JSON record per line (``.jsonl``)."""
    write_text(path, "".join(json_text(r, indent=None) + "\n" for r in records))


def write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomic write through a function that takes a binary file object (``torch.save``, ``np.savez``)."""
    with atomic_open(path, "wb") as fh:
        writer(fh)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


# The names of this module's temporaries: atomic_open's ``.NAME.XXXXXXXX.tmp`` and atomic_dir's
# ``.NAME.PID-XXXXXXXX.tmp`` / ``.old``, XXXXXXXX being tempfile's 8 random characters
_TEMPORARY = re.compile(r"\..+\.(?:[a-z0-9_]{8}\.tmp|\d+-[a-z0-9_]{8}\.(?:tmp|old))")


def is_temporary(name: str) -> bool:
    """A name this module gives its temporaries (``.NAME.XXXXXXXX.tmp``, a replaced folder's
    ``.NAME.PID-XXXXXXXX.old``): one left by a write cut short is edgekd's, wherever edgekd checks a
    folder as its own. Exactly those names: a user's hidden ``.notes.old`` or ``.draft.tmp`` is not."""
    return _TEMPORARY.fullmatch(name) is not None


def _dir_prefix(path: Path) -> str:
    """``.NAME.PID-``: the writer's process id in the name tells a live build from a dead one."""
    return f".{path.name}.{os.getpid()}-"


def remove_stale(path: str | Path) -> list[Path]:
    """Remove what an interrupted :func:`atomic_dir` for ``path`` left beside it (a killed export's
    half-built folder): only folders of our own naming (``.NAME.PID-XXXXXXXX.tmp`` / ``.old``)
    whose process is gone, so a build running in parallel keeps its folder. Returns them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[a-z0-9_]{{8}}\.(?:tmp|old)")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    stale = []
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            stale.append(p)
    return stale


@contextlib.contextmanager
def atomic_dir(path: str | Path, carry: Callable[[Path], Iterable[str]] | None = None) -> Iterator[Path]:
    """Build a folder in a temporary sibling; on success it replaces ``path`` whole.

    An existing ``path`` is moved aside first and deleted only after the new folder is in place, so
    a crash leaves either the old folder or the new one (plus, at worst, a stray ``.old`` folder).
    ``carry(folder)``: the relative paths (``a/b``) of the old folder's entries that are not deleted
    with it but moved into the new one at the same path, those there at the swap (export keeps a
    user's hidden files so, wherever they are); the new folder must not hold one of those paths,
    nor a file where one needs a folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=_dir_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _plain_mode(0o777))
    try:
        yield tmp
        for rel in _carried(path, carry):  # before the swap: the old folder is left as it is
            held = _in_the_way(tmp, rel)
            if held == rel:
                raise FileExistsError(
                    errno.EEXIST, f"{path} holds {rel}, to be kept, and so does the folder replacing it"
                )
            if held is not None:
                raise FileExistsError(
                    errno.EEXIST, f"{path} holds {rel}, to be kept, but the folder replacing it has a file at {held}"
                )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=_dir_prefix(path), suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        _carry_over(old / path.name, path, carry)
        shutil.rmtree(old, ignore_errors=True)


def _carried(folder: Path, carry: Callable[[Path], Iterable[str]] | None) -> list[str]:
    """The relative paths ``carry`` names in ``folder``, sorted (none when it is not a folder)."""
    if carry is None or not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(carry(folder))


def _in_the_way(folder: Path, rel: str) -> str | None:
    """What in ``folder`` keeps an entry from being moved to ``rel``: ``rel`` itself, or a file or
    link where one of its folders would be (None when nothing does: missing folders are made)."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        p = folder.joinpath(*parts[:i])
        if not os.path.lexists(p):
            return None
        if i == len(parts) or p.is_symlink() or not p.is_dir():
            return "/".join(parts[:i])
    return None


def _carry_over(source: Path, dest: Path, carry: Callable[[Path], Iterable[str]] | None) -> None:
    """Move ``source``'s entries that ``carry`` names into ``dest`` at the same relative paths,
    making the folders above one that ``dest`` lacks. Should one not move, the folder above
    ``source`` (an ``.old`` one, which :func:`remove_stale` would delete) is kept as ``.kept``
    instead, and the error names where."""
    for rel in _carried(source, carry):
        target = dest / rel
        try:
            # never replaced, nor moved through a link: what is there is the new folder's (or, by now, the user's)
            held = _in_the_way(dest, rel)
            if held is not None:
                raise FileExistsError(errno.EEXIST, "File exists", str(dest / held))
            parts = rel.split("/")
            for i in range(1, len(parts)):  # the folders above it that the new folder lacks
                with contextlib.suppress(FileExistsError):
                    os.mkdir(dest.joinpath(*parts[:i]))
            os.rename(source / rel, target)
        except OSError as exc:
            holder = source.parent
            kept = holder.with_name(holder.name.removesuffix(".old") + ".kept")
            with contextlib.suppress(OSError):
                os.rename(holder, kept)
                source = kept / source.name
            raise OSError(
                exc.errno,
                f"{dest} was replaced, but {rel} of the folder it replaced could not be moved into it "
                f"({exc.strerror}); that folder is kept as {source}",
            ) from None
