"""The artifact bundle: a folder with models, ``eval.npz`` and ``manifest.json``, checked by sha256.

Standard library only: a Raspberry Pi verifies and reads a copied bundle without torch, TensorFlow
or even numpy. ``edgekd verify BUNDLE`` and every bench run start here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError

MANIFEST = "manifest.json"
FORMAT = "edgekd.bundle/1"
# Folders inside a bundle that hold reports about it, not parts of it: `edgekd bench` writes to
# BUNDLE/bench by default (and `make bench` does), `edgekd mcu build` its firmware to BUNDLE/mcu;
# neither must make the next verification fail.
REPORT_DIRS = ("bench", "mcu")


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


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleError(f"bundle not found: {bundle} (make one with `edgekd export`)")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgekd bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path} is not an edgekd bundle manifest (expected format {FORMAT!r})")
    return manifest


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
    hidden files and the report folders in ``REPORT_DIRS``)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    ok, bad = [], []
    for name, rec in sorted(manifest["files"].items()):
        path = bundle / name
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
        if rel not in listed and not rel.startswith(".") and rel.split("/", 1)[0] not in REPORT_DIRS:
            bad.append(f"{rel}: not in the manifest")
    return VerifyResult(ok, bad)


def require_verified(bundle: str | Path) -> dict[str, Any]:
    """The manifest of a bundle that passes verification; otherwise one line naming the bad file."""
    result = verify_bundle(bundle)
    if not result.passed:
        more = f" (and {len(result.bad) - 1} more)" if len(result.bad) > 1 else ""
        raise BundleError(f"bundle {bundle} failed verification: {result.bad[0]}{more}; re-export or re-copy it")
    return read_manifest(bundle)
