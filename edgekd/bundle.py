"""The artifact bundle: a folder with models, ``eval.npz`` and ``manifest.json``, checked by sha256.

Standard library only: a Raspberry Pi verifies and reads a copied bundle without torch, TensorFlow
or even numpy. ``edgekd verify BUNDLE`` and every bench run start here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.jsonfile import read_json_object
from edgekd.limits import MAX_IMAGE_SIDE, control_character_in, is_finite_number
from edgekd.paths import UnsafePathError, as_path, escaping_links, member

MANIFEST = "manifest.json"
FORMAT = "edgekd.bundle/1"
# Folders inside a bundle that hold reports about it, not parts of it: `edgekd bench` writes to
# BUNDLE/bench/<device> by default (and `make bench` does), `edgekd mcu build` its firmware to
# BUNDLE/mcu/<core>; neither must make the next verification fail.
REPORT_DIRS = ("bench", "mcu")
# An export writes about 15 files (every format of two roles, the C array, the reports); far more
# is no bundle edgekd wrote, and each listed file is stat'ed and hashed by verify.
MAX_FILES = 1000
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class BundleError(EdgekdError):
    """A bundle that is missing, incomplete or altered."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_structure(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest's shape (the types every reader relies on), or None."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"not an edgekd bundle manifest (expected format {FORMAT!r})"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "'files' must be a mapping of file name to {sha256, bytes}"
    if len(files) > MAX_FILES:  # 400,000 entries took verify 81 s to list as missing
        return f"it lists {len(files):,} files; a bundle holds at most {MAX_FILES:,}"
    for name, rec in files.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or not _is_count(rec.get("bytes")):
            return f"files[{name!r}] must be {{sha256: str, bytes: int ≥ 0}}, got {rec!r:.80}"
    models = manifest.get("models", {})
    if not isinstance(models, dict):
        return "'models' must be a mapping of file name to its description"
    for name, entry in models.items():
        if name not in files:
            return f"models[{name!r}] is not among the checksummed files"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("role"), str)
            or not isinstance(entry.get("format"), str)
        ):
            return f"models[{name!r}] must have a role and a format (strings)"
        for key in ("input", "output"):
            if not isinstance(entry.get(key, {}), dict):
                return f"models[{name!r}].{key} must be a mapping"
    ev = manifest.get("eval")
    if ev is not None and (
        not isinstance(ev, dict)
        or ev.get("file") not in files
        or not (ev.get("count") is None or _is_count(ev.get("count")))
    ):
        return "'eval' must name one of the checksummed files (and an image count)"
    labels = manifest.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        return "'labels' must be a list of strings"
    # labels are printed as they are (predict's table, the Predictor's results): a newline or an
    # escape sequence in one (a class folder's name, a hand-edited manifest) rewrote the terminal
    unprintable = control_character_in(labels)
    if unprintable is not None:
        return f"'labels' must be printable text, got {unprintable!r:.60} (a control character)"
    roles = manifest.get("roles", {})
    if not isinstance(roles, dict) or not all(isinstance(r, dict) for r in roles.values()):
        return "'roles' must be a mapping of role to its description"
    if not isinstance(manifest.get("task") or "", str):
        return "'task' must be a string"
    return _preprocessing_problem(manifest.get("preprocessing", {}))


RESIZE_FILTERS = ("bilinear", "nearest", "bicubic")  # what predict may resize with (Pillow's names)


def _preprocessing_problem(prep: Any) -> str | None:
    """What is wrong with the manifest's ``preprocessing`` (what predict does to an image before the
    model sees it), or None. Every key is optional (older bundles lack some); a present one is
    checked: an image size of 100000×100000 would be a 30 GB resize."""
    if not isinstance(prep, dict):
        return "'preprocessing' must be a mapping"
    size = prep.get("image_size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2 and all(_is_count(v) and 1 <= v <= MAX_IMAGE_SIDE for v in size)
    ):
        return f"preprocessing.image_size must be [height, width], each 1-{MAX_IMAGE_SIDE}, got {size!r:.60}"
    channels = prep.get("channels")
    if channels is not None and not (_is_count(channels) and 1 <= channels <= 4):
        return f"preprocessing.channels must be 1-4, got {channels!r:.60}"
    resize = prep.get("resize")
    if resize is not None and resize not in RESIZE_FILTERS:
        return f"preprocessing.resize must be one of {', '.join(RESIZE_FILTERS)}, got {resize!r:.60}"
    low_high = prep.get("input_range")
    if low_high is not None and not (
        isinstance(low_high, list)
        and len(low_high) == 2
        and all(map(is_finite_number, low_high))
        and low_high[0] < low_high[1]
    ):
        return f"preprocessing.input_range must be [low, high] with low < high, got {low_high!r:.60}"
    for key, low in (("mean", None), ("std", 0.0)):
        values = prep.get(key)
        if values is not None and not (
            isinstance(values, list)
            and values
            and all(is_finite_number(v) and (low is None or v > low) for v in values)
            and (channels is None or len(values) in (1, channels))
        ):
            rule = "finite numbers" + (" > 0" if low is not None else "")
            return f"preprocessing.{key} must be a list of {rule}, one per channel, got {values!r:.60}"
    return None


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The bundle's manifest, refused (one line) unless it is well-formed and every file name in it
    is a plain relative path that stays inside the bundle (no ``..``, no absolute path, no symlink
    leading out): names come from a file that may have been made by anyone."""
    bundle = Path(bundle)
    if bundle.is_file():
        raise BundleError(f"{bundle} is a file, not a bundle folder (`edgekd export` makes one)")
    if not bundle.is_dir():
        raise BundleError(f"bundle not found: {bundle} (make one with `edgekd export`)")
    path = bundle / MANIFEST
    if path.is_symlink() or not path.is_file():
        what = "is a symbolic link" if path.is_symlink() else "is not a file" if path.exists() else "is missing"
        raise BundleError(f"{bundle} is not an edgekd bundle: {MANIFEST} {what}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:  # read whole below: a 2 GB "manifest" is no bundle's
        raise BundleError(f"{path} is malformed: {path.stat().st_size:,} bytes (a manifest is a few KB)")
    # bad JSON, not UTF-8, an integer of over 4,300 digits, an unreadable file, a list: one line
    manifest = read_json_object(path, "make the bundle again with `edgekd export`", error=BundleError)
    problem = _check_structure(manifest)
    if problem:
        raise BundleError(f"{path} is malformed: {problem}")
    try:
        for name in manifest["files"]:
            member(bundle, name, f"{path} files")
    except UnsafePathError as exc:
        raise BundleError(f"bundle {bundle} refused: {exc}") from None
    return manifest


def bundle_file(bundle: str | Path, manifest: dict[str, Any], name: str) -> Path:
    """The path of a file the manifest lists (checked by :func:`read_manifest` to stay inside)."""
    if name not in manifest["files"]:
        raise BundleError(f"{name!r} is not among the files of bundle {bundle}")
    return member(bundle, name, f"{bundle}/{MANIFEST}")


@dataclass(frozen=True)
class VerifyResult:
    ok: list[str]
    bad: list[str]  # "name: why"

    @property
    def passed(self) -> bool:
        return not self.bad


def verify_bundle(bundle: str | Path) -> VerifyResult:
    """Check every file the manifest lists (presence, size, sha256); files it does not list are
    reported too, since a bundle is copied whole and an extra model would go unverified (except
    hidden files, at any depth, and the report folders in ``REPORT_DIRS``)."""
    bundle = as_path(bundle, "bundle")
    manifest = read_manifest(bundle)
    ok, bad = [], []
    for name, rec in sorted(manifest["files"].items()):
        path = bundle_file(bundle, manifest, name)
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif path.stat().st_size != rec.get("bytes"):
            bad.append(f"{name}: size {path.stat().st_size} bytes, manifest says {rec.get('bytes')}")
        elif sha256_file(path) != rec.get("sha256"):
            bad.append(f"{name}: sha256 mismatch (file altered or corrupt)")
        else:
            ok.append(name)
    listed = set(manifest["files"]) | {MANIFEST}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        rel = path.relative_to(bundle).as_posix()
        hidden = any(part.startswith(".") for part in rel.split("/"))  # the user's, which export carries over
        if rel not in listed and not hidden and rel.split("/", 1)[0] not in REPORT_DIRS:
            bad.append(f"{rel}: not in the manifest")
    for rel in escaping_links(bundle):  # report folders too: a planted link there redirects writes
        bad.append(f"{rel}: a symbolic link that leads out of the bundle (or nowhere)")
    return VerifyResult(ok, bad)


def require_verified(bundle: str | Path) -> dict[str, Any]:
    """The manifest of a bundle that passes verification; otherwise one line naming the bad file."""
    result = verify_bundle(bundle)
    if not result.passed:
        more = f" (and {len(result.bad) - 1} more)" if len(result.bad) > 1 else ""
        raise BundleError(f"bundle {bundle} failed verification: {result.bad[0]}{more}; re-export or re-copy it")
    return read_manifest(bundle)
