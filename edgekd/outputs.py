"""Where edgekd may write: a new or empty folder, or a folder of its own kind that it made.

Every verb that writes an output folder (distill's run, export's bundle, bench's and deploy's
report) asks here before any work is done, so that a wrong ``--out`` costs nothing and deletes nothing: a file, a user's
folder, the input being read or a folder above it, and a place that cannot be written are each
refused with one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgekd.atomic import is_temporary
from edgekd.errors import EdgekdError


class OutputError(EdgekdError):
    """An output path edgekd must not (or cannot) write."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_dir(
    path: str | Path,
    what: str,
    own: Callable[[Path], str | None],
    protect: Sequence[str | Path] = (),
    replace: bool = True,
    beside: bool = False,
) -> None:
    """Raise :class:`OutputError` unless ``path`` may become the ``what`` folder.

    ``own(folder)`` says why an existing, non-empty folder is not edgekd's ``what`` (None when it
    is, and so may be replaced; ``replace=False``: may not be replaced at all). ``protect``: inputs
    being read, which neither ``path`` nor a folder above them may be. ``beside``: the folder is
    built beside ``path`` and renamed into place (its parent must be writable too).
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    for p in protect:
        if _inside(Path(os.path.realpath(p)), real):
            raise OutputError(
                f"the {what} folder {path} would replace {p}, which is being read: choose a folder outside it"
            )
    if beside and path.is_symlink():
        # renamed into place, the new folder would replace the link (the user's) instead of its target
        raise OutputError(
            f"{path} is a symbolic link; the {what} is built beside it and renamed into place, which would replace "
            f"the link: pass the folder it points to ({os.path.realpath(path)}) or a new folder"
        )
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"{path} is an existing file, not a folder: choose a folder path for the {what}")
        if any(path.iterdir()):
            why = own(path)
            if why is not None:
                raise OutputError(
                    f"{path} is a folder edgekd did not make ({why}); edgekd writes a {what} only into a new or "
                    f"empty folder or over its own {what}: choose another folder, or move that one away yourself"
                )
            if not replace:
                raise OutputError(f"{path} already holds a {what}")
    check_writable(path, what)
    if beside:
        check_writable(path.parent, what)


def check_writable(path: str | Path, what: str) -> None:
    """``path`` (a folder, existing or to be made) can be written: its nearest existing folder is
    a folder and writable. Checked before the work, so that no result is lost at the end."""
    path = Path(path)
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"cannot write the {what} to {path}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write the {what} to {path}: {probe} is not writable (read-only or permission denied)"
        )
    # os.access says yes to root everywhere; creating a file is the real question (a read-only
    # mount, /proc, a full quota). Nothing is left behind.
    try:
        fd, name = tempfile.mkstemp(prefix=".edgekd-probe.", dir=probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write the {what} to {path}: {probe} is not writable ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


# What a report folder of bench's or deploy's holds: the report, its plot, the MCU app's headers and
# C arrays (.cc + .h), and the hidden temporary files of an atomic write cut short (atomic.is_temporary:
# the names it makes, not any hidden .tmp/.old, which may be a user's).
_REPORT_FILE = re.compile(r"bench\.(json|md|png)|[^/]+_tflm_config\.h|[^/]+_model_data\.(cc|h)")


def _is_report_file(name: str) -> bool:
    return bool(_REPORT_FILE.fullmatch(name)) or is_temporary(name)


def not_a_report(folder: Path) -> str | None:
    """Why the existing folder ``folder`` is not an edgekd report folder (None when it holds only
    files a report writes, so rerunning the bench may replace them)."""
    # a user's hidden entry (Finder's .DS_Store) stays: a report replaces its own files by name
    others = sorted(
        p.name
        for p in folder.iterdir()
        if not (_is_report_file(p.name) and not p.is_dir()) and not is_kept_hidden(p.name)
    )
    if not others:
        return None
    more = f" and {len(others) - 1} more" if len(others) > 1 else ""
    return f"it holds {others[0]}{more}, which no edgekd report writes"


def check_report_dir(path: str | Path, flag: str, what: str, inside: str | Path | None = None) -> Path:
    """Refuse, before any measuring, a report folder (bench's, deploy's) that cannot or must not
    be written: an existing file; a folder holding anything a report does not write (a user's
    folder, whose bench.json or bench.png would be replaced); a place that cannot be written;
    and, when ``path`` lies in the bundle ``inside`` (its default ``BUNDLE/bench``), a symbolic
    link anywhere below the bundle on the way to it, since a link planted in a bundle would
    redirect the writes elsewhere.
    Files in the folder are replaced by rename (:mod:`edgekd.atomic`), which replaces a link
    there instead of writing through it. Nothing is created here. Returns ``path``."""
    path = Path(path)
    if inside is not None:
        stop = Path(inside)  # the bundle itself may be a link the user made
        for p in (path, *path.parents):
            if p == stop:
                break
            if p.is_symlink():
                raise OutputError(
                    f"{flag} {path}: {p} is a symbolic link; edgekd does not write through links in a bundle (remove "
                    f"it, or pass another {flag})"
                )
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise OutputError(
            f"{flag} {path} is an existing file, not a folder: pass a folder for the {what} (it is made if missing)"
        )
    why = not_a_report(path) if path.is_dir() else None
    if why is not None:
        raise OutputError(
            f"{flag} {path} is a folder edgekd did not make ({why}); edgekd writes a {what} only into a new or empty "
            "folder or over its own report: choose another folder, or move that one away yourself"
        )
    check_writable(path, what)
    return path


def check_output_file(
    path: str | Path,
    flag: str,
    what: str,
    own: Callable[[Path], bool] | None = None,
    inside: str | Path | None = None,
    except_under: str | Path | None = None,
) -> Path:
    """Refuse an output file that is a folder, whose folder cannot be written or lies in a missing
    folder (one missing folder is made, for the file; two is a typo), that lies in the
    folder ``inside`` (a bundle being read: a file added to it breaks its manifest) other than
    under ``except_under`` (its report folder), or that exists and is not edgekd's own ``what``
    (``own(path)`` False: the model being measured, a manifest, a user's file). An existing file
    of edgekd's is replaced atomically (a symlink there is replaced as a link, never written through)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder: pass a file name for the {what}")
    _check_folder_above(path, flag)
    if inside is not None:
        real = Path(os.path.realpath(path))
        if _inside(real, Path(os.path.realpath(inside))) and not (
            except_under is not None and _inside(real, Path(os.path.realpath(except_under)))
        ):
            raise OutputError(
                f"{flag} {path} is inside {inside}, which is being read (a file added there breaks its manifest): "
                "choose a file outside it"
            )
    if own is not None and (path.exists() or path.is_symlink()) and not own(path):
        raise OutputError(
            f"{flag} {path} is an existing file that is not an edgekd {what}; edgekd replaces only its own: "
            "choose another file name, or move that one away yourself"
        )
    check_writable(path.parent, what)
    return path


def _check_folder_above(path: Path, flag: str) -> None:
    """A file's own folder is made when missing, not the folder above it too: a file two missing
    folders deep (``/nonexistent/dir/p.json``) is most likely a typo, and would leave folders behind."""
    folder = path.parent
    if not folder.exists() and not folder.parent.exists():
        raise OutputError(
            f"{flag} {path}: folder {folder.parent} does not exist (edgekd makes the file's own folder only)"
        )


def _json_object_at(path: Path) -> dict[str, Any] | None:
    """The JSON object in the regular file ``path`` (never through a link), or None."""
    from edgekd.jsonfile import cached_json_object

    return cached_json_object(path) if path.is_file() and not path.is_symlink() else None


def holds_json_keys(*keys: str) -> Callable[[Path], bool]:
    """``own`` for :func:`check_output_file`: the file is a JSON object with all of ``keys``."""

    def own(path: Path) -> bool:
        data = _json_object_at(path)
        return data is not None and all(k in data for k in keys)

    return own


def check_report_json(path: str | Path | None, benchmark: str) -> Path | None:
    """A benchmark script's ``--json`` checked before any measuring: not a folder, its folder there
    (or one to make), and an existing file replaced only when it is that script's own report (a JSON
    object whose ``"benchmark"`` names the script, as every report written through
    :func:`report_json` does). None when no ``--json`` was given."""
    if path is None:
        return None

    def own(p: Path) -> bool:
        data = _json_object_at(p)
        return data is not None and data.get("benchmark") == benchmark

    return check_output_file(path, "--json", f"{benchmark} report", own=own)


def report_json(benchmark: str, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with the ``"benchmark"`` key that :func:`check_report_json` recognizes first."""
    return {"benchmark": benchmark, **report}


# the file `edgekd mcu build` marks its output folder with: a folder edgekd made, which it may
# rewrite (here, below mcu/, so that exporting over the bundle may replace it)
MCU_BUILD_MARKER = ".edgekd-mcu-build"


def is_kept_hidden(name: str) -> bool:
    """A hidden entry anywhere in a bundle that is the user's (``.DS_Store``, also the one Finder
    writes in ``bench/``, ``.git``, a ``.notes/`` folder), not an atomic write's temporary:
    exporting over the bundle moves it into the new one (:func:`kept_hidden`), and ``edgekd verify``
    ignores it."""
    return name.startswith(".") and not is_temporary(name)


def kept_hidden(folder: Path) -> list[str]:
    """The relative paths of the user's hidden entries in the bundle ``folder``, at any depth
    (:func:`is_kept_hidden`; a hidden folder's, not what it holds): export carries them into the
    new bundle at the same paths (:func:`edgekd.atomic.atomic_dir`'s ``carry``). MCU build folders
    are searched too (an MCU build is edgekd's, its marker included, but a ``.DS_Store`` Finder
    left in one is not); links and temporaries are not."""
    found = []
    for entry in _entries(folder, into_mcu_builds=True):
        parts = entry.relative_to(folder).parts
        if entry.name == MCU_BUILD_MARKER and entry.is_file() and not entry.is_symlink():
            continue  # the build's own mark: it goes with the build
        if is_kept_hidden(parts[-1]) and not any(is_kept_hidden(part) for part in parts[:-1]):
            found.append("/".join(parts))
    return found


def not_a_bundle(folder: Path, keep_hidden: bool = False) -> str | None:
    """Why ``folder`` is not an edgekd bundle export may replace (None when it is one).

    Its manifest.json must be an edgekd manifest, and everything in it part of the bundle: a file
    the manifest lists, edgekd's reports in its report folders (``bench/``, ``mcu/``), an atomic
    write's temporary. Export replaces the folder whole, so a user's file or folder left in a bundle
    makes it theirs, and it is not replaced; so does a link, which edgekd never puts in a bundle.
    ``keep_hidden``: the caller carries the user's hidden entries, at any depth (:func:`kept_hidden`),
    into the folder replacing this one, so they do not make it the user's (a link in them still
    does), nor does a folder holding only them. A caller that deletes the folder (distill
    --overwrite, of a bundle in its run) keeps the default."""
    from edgekd.bundle import MANIFEST, REPORT_DIRS, BundleError, read_manifest

    try:
        manifest = read_manifest(folder)
    except BundleError:
        return f"it has no edgekd {MANIFEST}"
    listed = {*manifest["files"], MANIFEST}
    parents = {"/".join(name.split("/")[:i]) for name in listed for i in range(1, name.count("/") + 1)}
    for entry in _entries(folder):
        rel = entry.relative_to(folder).as_posix()
        if entry.is_symlink():
            return f"it holds a link, {rel}"
        if keep_hidden and any(is_kept_hidden(part) for part in rel.split("/")):
            continue  # the user's, moved into the new bundle, never deleted
        if is_temporary(entry.name) or (rel in listed and entry.is_file()) or (rel in parents and entry.is_dir()):
            continue
        if rel.split("/", 1)[0] in REPORT_DIRS and _is_report_entry(entry):
            continue
        if keep_hidden and holds_only_kept_hidden(entry):
            continue  # remade in the new bundle for what it holds: nothing of it is deleted
        return f"it holds {rel}, which is not part of the bundle"
    return None


def not_a_bundle_to_replace(folder: Path) -> str | None:
    """:func:`not_a_bundle` for export, which carries the user's hidden entries into the bundle
    replacing ``folder``."""
    return not_a_bundle(folder, keep_hidden=True)


def holds_only_kept_hidden(folder: Path) -> bool:
    """``folder`` (not a link) holds the user's hidden entries and nothing else, or folders that
    do: carrying them remakes it (and an MCU build may write into it, deleting none of them). An
    empty folder does not, since nothing would remake it."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    entries = list(folder.iterdir())
    return bool(entries) and all(is_kept_hidden(e.name) or holds_only_kept_hidden(e) for e in entries)


def _entries(folder: Path, into_mcu_builds: bool = False) -> Iterator[Path]:
    """Everything under ``folder``, a folder before what it holds. Links are not followed, and
    neither an atomic write's temporary nor (unless ``into_mcu_builds``) an MCU build's folder
    (marked as edgekd's) is entered."""
    for entry in sorted(folder.iterdir()):
        yield entry
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and not is_temporary(entry.name)
            and (into_mcu_builds or not (entry / MCU_BUILD_MARKER).is_file())
        ):
            yield from _entries(entry, into_mcu_builds)


def _is_report_entry(entry: Path) -> bool:
    """Something edgekd writes under a bundle's report folders: a folder (bench's and deploy's
    report folders, an MCU build's, marked as edgekd's), a report's files, or a bench --json file."""
    if entry.is_dir():
        return True  # what it holds is checked entry by entry
    if _is_report_file(entry.name):
        return True
    return entry.suffix == ".json" and holds_json_keys("schema", "results")(entry)
