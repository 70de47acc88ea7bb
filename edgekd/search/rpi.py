"""The ``rpi_ms`` budget key: a Raspberry Pi latency ESTIMATE from a recorded Pi bench.

A search cannot run every candidate on a Pi, so ``rpi_ms`` scales the int8 latency measured on
this host (``host_ms``: 1 thread, median) by the Pi/host ratio of one reference model: the p50 of
an int8 TFLite model at 1 thread in a ``bench.json`` written by ``edgekd bench --device rpi`` on a
real Pi (``edgekd deploy --bench`` brings it back to ``BUNDLE/bench/<host>/bench.json``), divided
by the same file's latency measured here the way candidates are. One ratio for every candidate is
an approximation (the Pi's and this host's kernels do not scale alike for every op mix): take a
reference of the same family and size as the candidates, and check the winner with
``edgekd bench --device rpi``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError
from edgekd.limits import is_finite_number


def rpi_calibration(bench_json: str | Path) -> dict[str, Any]:
    """{bench_sha256, board, reference, pi_ms, host_ms, factor} from a Pi ``bench.json``; the
    reference model is found in the bench's bundle (its recorded path, else the bundle holding
    ``bench/<host>/bench.json``) and checked by sha256 against that bundle's manifest."""
    path = Path(bench_json)
    if not path.is_file():
        raise ConfigError(f"--rpi-bench: {path} is not a file (a bench.json of `edgekd bench --device rpi`)")
    raw = path.read_bytes()
    try:
        bench = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
        raise ConfigError(f"--rpi-bench: {path} is not JSON") from None
    settings = bench.get("settings") if isinstance(bench, dict) else None
    if not isinstance(settings, dict) or settings.get("device") != "rpi":
        raise ConfigError(f"--rpi-bench: {path} is not a bench of `edgekd bench --device rpi`")
    from edgekd.benchmark.row import check_schema

    try:
        check_schema(bench, f"--rpi-bench: {path}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # the file may come from anywhere: every field read below is checked for its type first (a host
    # or row that was not a mapping was an AttributeError traceback; a NaN p50 a NaN factor)
    host, results = bench.get("host") or {}, bench.get("results") or []
    if not isinstance(host, dict) or not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ConfigError(f"--rpi-bench: {path} is malformed: 'host' must be a mapping and 'results' a list of rows")
    board = str(host.get("board") or "")
    if host.get("emulated") or not board.startswith("Raspberry Pi"):
        seen = f"emulated ({host['emulated']})" if host.get("emulated") else f"board {board or 'unknown'!r}"
        raise ConfigError(f"--rpi-bench: {path} was not measured on a Raspberry Pi ({seen})")
    rows = [
        r
        for r in results
        if r.get("format") == "tflite_int8"
        and r.get("threads") == 1
        and r.get("status") == "ok"
        and isinstance(r.get("file"), str)
        and is_finite_number(r.get("p50_us"))
        and r["p50_us"] > 0
    ]
    if not rows:
        raise ConfigError(f"--rpi-bench: {path} has no int8 TFLite row measured at 1 thread")
    row = next((r for r in rows if r.get("model") == "student"), rows[0])
    reference = _reference_file(path, bench, row["file"])
    from edgekd.search.measure import host_latency_ms

    host_ms = host_latency_ms(reference)
    pi_ms = float(row["p50_us"]) / 1000
    return {
        "bench_sha256": hashlib.sha256(raw).hexdigest(),
        "board": board,
        "reference": row["file"],
        "pi_ms": pi_ms,
        "host_ms": host_ms,
        "factor": round(pi_ms / host_ms, 4),
    }


def _reference_file(bench_path: Path, bench: dict[str, Any], name: str) -> Path:
    from edgekd.bundle import bundle_file, read_manifest
    from edgekd.errors import EdgekdError

    recorded = bench.get("bundle") if isinstance(bench.get("bundle"), dict) else {}
    candidates = [Path(recorded["path"])] if isinstance(recorded.get("path"), str) and recorded["path"] else []
    parents = bench_path.resolve().parents
    if len(parents) > 2:
        candidates.append(parents[2])  # BUNDLE/bench/<host>/bench.json
    for bundle in candidates:
        if not (bundle / "manifest.json").is_file():
            continue
        try:  # names in a manifest are checked to stay inside the bundle
            manifest = read_manifest(bundle)
            file = bundle_file(bundle, manifest, name)
        except EdgekdError:
            continue
        if not file.is_file():
            continue
        if hashlib.sha256(file.read_bytes()).hexdigest() != manifest["files"][name].get("sha256"):
            raise ConfigError(f"--rpi-bench: {file} differs from the file its bundle's manifest lists (sha256)")
        return file
    raise ConfigError(
        f"--rpi-bench: the benched model {name} is not on this machine "
        f"(looked in {', '.join(str(c) for c in candidates)}); "
        "keep the bench.json in BUNDLE/bench/<host>/ beside its bundle"
    )
