"""Where the TensorFlow Lite Micro, CMSIS-NN, CMSIS and flatbuffers sources come from: the source
archives of a third-party folder (unpacked once into the cache, TFLM's own patches applied), or a
user's tflite-micro checkout whose Makefile has already downloaded its libraries. Either way the
result is a :class:`SourceTree` with a content identity that keys every cached object file.
Standard library only."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgekdError, first_line

# archive name prefix → folder name under TFLM's tools/make/downloads (what its Makefile expects)
ARCHIVES = {
    "tflite-micro": "tflite-micro",
    "cmsis_nn": "cmsis_nn",
    "cmsis6": "cmsis",
    "flatbuffers": "flatbuffers",
    "gemmlowp": "gemmlowp",
    "ruy": "ruy",
}
_DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
_SOURCE_SUFFIXES = (".c", ".cc", ".h", ".S")


class SourceError(EdgekdError):
    """The TFLM sources are missing or incomplete."""


@dataclass(frozen=True)
class SourceTree:
    tflm: Path  # holds tensorflow/lite/micro
    cmsis_nn: Path  # holds Include/ and Source/
    cmsis: Path  # holds CMSIS/Core/Include
    flatbuffers: Path  # holds include/flatbuffers
    gemmlowp: Path  # holds fixedpoint/
    ruy: Path  # holds ruy/profiler
    identity: str  # sha256 of the sources' content (archives) or of their paths, sizes and times (checkout)
    origin: str  # where they came from, for the report

    @property
    def include_dirs(self) -> list[Path]:
        return [
            self.tflm,
            self.flatbuffers / "include",
            self.gemmlowp,
            self.ruy,
            self.cmsis,
            self.cmsis / "CMSIS" / "Core" / "Include",
            self.cmsis_nn,
            self.cmsis_nn / "Include",
        ]


def default_third_party() -> Path | None:
    """``$EDGEKD_THIRD_PARTY``, else ``../shared/third_party`` beside this checkout, if present."""
    env = os.environ.get("EDGEKD_THIRD_PARTY")
    if env:
        return Path(env).expanduser()
    guess = Path(__file__).resolve().parents[3] / "shared" / "third_party"
    return guess if guess.is_dir() else None


def _archive(folder: Path, prefix: str) -> Path:
    found = sorted(p for p in folder.glob(f"{prefix}-*.tar.gz") if p.is_file())
    if len(found) != 1:
        raise SourceError(f"{folder}: expected one {prefix}-<revision>.tar.gz, found {len(found)}")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _apply_patch(patch: Path, folder: Path) -> None:
    git = shutil.which("git")
    if git is None:
        raise SourceError("git is not installed (needed to apply TFLM's flatbuffers patch: apt-get install git)")
    done = subprocess.run([git, "apply", str(patch)], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise SourceError(f"applying {patch.name} in {folder.name}/ failed: {done.stderr.strip()[:200]}")


def from_archives(folder: Path, cache: Path) -> SourceTree:
    """Unpack the archives of ``folder`` once into ``cache/src/<identity>/`` (atomic: a finished
    folder is renamed into place) and apply TFLM's flatbuffers patch, as its Makefile would."""
    archives = {prefix: _archive(folder, prefix) for prefix in ARCHIVES}
    identity = hashlib.sha256("".join(f"{p}:{_sha256(a)}\n" for p, a in sorted(archives.items())).encode()).hexdigest()
    root = cache / "src" / identity[:16]
    if not (root / ".complete").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root.parent))
        try:
            for prefix, archive in archives.items():
                try:
                    with tarfile.open(archive) as tar:
                        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
                        if tops != {ARCHIVES[prefix]}:
                            raise SourceError(
                                f"{archive.name}: expected one top folder {ARCHIVES[prefix]}/, found {sorted(tops)[:3]}"
                            )
                        tar.extractall(work, filter="data")  # "data": no links out of the folder, no devices
                except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:  # not an archive, or cut short
                    raise SourceError(f"{archive} is not a readable archive ({first_line(exc, 120)})") from None
            _apply_patch(
                work / "tflite-micro" / "tensorflow/lite/micro/tools/make/flatbuffers.patch", work / "flatbuffers"
            )
            (work / ".complete").write_text(identity + "\n")
            if root.exists():  # an unfinished earlier attempt
                shutil.rmtree(root)
            os.replace(work, root)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return SourceTree(
        root / "tflite-micro",
        root / "cmsis_nn",
        root / "cmsis",
        root / "flatbuffers",
        root / "gemmlowp",
        root / "ruy",
        identity,
        f"archives in {folder}",
    )


def _stat_identity(folders: list[Path]) -> str:
    """A checkout changes in place: key it by every source file's path, size and modification time."""
    h = hashlib.sha256()
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "gen")
            for name in sorted(filenames):
                if name.endswith(_SOURCE_SUFFIXES):
                    st = os.stat(os.path.join(dirpath, name))
                    rel = os.path.relpath(os.path.join(dirpath, name), folder)
                    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def from_checkout(tflm: Path) -> SourceTree:
    """A tflite-micro checkout with its libraries in tools/make/downloads (run its Makefile once,
    e.g. ``make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads``)."""
    dl = tflm / _DOWNLOADS
    need = {
        "cmsis_nn": dl / "cmsis_nn" / "Include",
        "cmsis": dl / "cmsis" / "CMSIS" / "Core" / "Include",
        "flatbuffers": dl / "flatbuffers" / "include",
        "gemmlowp": dl / "gemmlowp" / "fixedpoint",
        "ruy": dl / "ruy" / "ruy",
    }
    missing = [name for name, path in need.items() if not path.is_dir()]
    if missing:
        raise SourceError(
            f"{tflm}: {', '.join(missing)} not under {_DOWNLOADS}; run `make -f "
            "tensorflow/lite/micro/tools/make/Makefile OPTIMIZED_KERNEL_DIR=cmsis_nn third_party_downloads` there "
            "first"
        )
    folders = [tflm / "tensorflow", *(dl / n for n in need)]
    return SourceTree(
        tflm,
        dl / "cmsis_nn",
        dl / "cmsis",
        dl / "flatbuffers",
        dl / "gemmlowp",
        dl / "ruy",
        _stat_identity(folders),
        f"checkout {tflm}",
    )


def resolve(third_party: str | Path | None, cache: Path) -> SourceTree:
    """``third_party``: a folder of source archives (see ../shared/third_party/README.md) or a
    tflite-micro checkout; None: :func:`default_third_party`."""
    folder = Path(third_party).expanduser() if third_party is not None else default_third_party()
    if folder is None:
        raise SourceError(
            "no TFLite Micro sources: pass --tflm DIR (a tflite-micro checkout or a folder of its source archives) or "
            "set EDGEKD_THIRD_PARTY"
        )
    given = f"--tflm {folder}" if third_party is not None else f"{folder} (EDGEKD_THIRD_PARTY or the default)"
    if not folder.is_dir():
        raise SourceError(f"{given}: not a folder")
    if (folder / "tensorflow" / "lite" / "micro").is_dir():
        return from_checkout(folder)
    if any(folder.glob("tflite-micro-*.tar.gz")):
        return from_archives(folder, cache)
    raise SourceError(
        f"{given}: neither a tflite-micro checkout (tensorflow/lite/micro/) nor a folder of source archives "
        "(tflite-micro-*.tar.gz)"
    )
