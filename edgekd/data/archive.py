"""Archives as data roots: a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` is extracted once into the cache."""

from __future__ import annotations

import lzma
import tarfile
import zipfile
import zlib
from pathlib import Path

from edgekd.atomic import atomic_dir
from edgekd.data.cache import cache_root, fingerprint
from edgekd.errors import DataError, first_line

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def check_archive(path: Path) -> None:
    """A :class:`DataError` line unless ``path`` opens as the archive its name says (zip, or a tar
    with any compression): checked before any work, since tarfile's own error lists every
    compression it tried, over several lines."""
    readable = zipfile.is_zipfile(path) if path.name.lower().endswith(".zip") else tarfile.is_tarfile(path)
    if not readable:
        raise DataError(f"{path} is not a readable archive (tar.gz, tgz, tar or zip)")


def extract_once(path: Path, cache_dir: str | None = None, log=print) -> Path:
    """The folder holding the archive's contents, extracting it on first use.

    The cache key covers the archive's absolute path, size and mtime, so a changed archive is
    extracted afresh. Extraction goes to a temporary folder renamed into place when complete.
    """
    st = path.stat()
    target = (
        cache_root(cache_dir)
        / "extracted"
        / f"{path.name.split('.')[0]}-{fingerprint(str(path.resolve()), st.st_size, st.st_mtime_ns)}"
    )
    if target.is_dir():
        return target
    check_archive(path)
    log(f"extracting {path} → {target} (once)")
    try:
        with atomic_dir(target) as tmp:
            if path.name.lower().endswith(".zip"):
                with zipfile.ZipFile(path) as zf:
                    zf.extractall(tmp)
            else:
                with tarfile.open(path) as tf:
                    tf.extractall(tmp, filter="data")  # refuses absolute paths and `..` members
                    check_tar_end(tf, path)
    # a damaged compressed stream is also zlib's or lzma's own error, and a zip member's unknown
    # compression method (or a damaged method field) a NotImplementedError: none of them an OSError
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        zlib.error,
        lzma.LZMAError,
        NotImplementedError,
    ) as exc:
        raise DataError(f"cannot extract {path}: {first_line(exc)}") from None
    return target


def check_tar_end(tf: tarfile.TarFile, path: Path) -> None:
    """A :class:`DataError` unless all that follows the last member ``tf`` read is the end-of-archive
    zeros. tarfile takes a header it cannot parse anywhere past the first for the archive's end and
    stops there without a word: a damaged archive was extracted in part, cached as if whole, and
    trained on with its later images missing. Reading on to the end also checks a gzip stream's
    CRC and length, which tarfile never reached then."""
    assert tf.fileobj is not None
    while block := tf.fileobj.read(1 << 20):
        if block.strip(b"\0"):
            raise DataError(
                f"cannot extract {path}: damaged after byte {tf.offset} of its tar data (a header that is "
                "no tar header, and data after it)"
            )


def find_layout_root(folder: Path, required: str = "train") -> Path:
    """``folder`` itself if it holds ``required/``, else its single sub-folder that does
    (archives often wrap their content in one top-level folder)."""
    if (folder / required).is_dir():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / required).is_dir():
        return subdirs[0]
    return folder
