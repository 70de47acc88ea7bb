"""The bench stage: latency, accuracy, size and memory of every model file in a bundle.

>>> import edgekd
>>> report = edgekd.bench("artifacts/digits", runs=200, threads=1, min_accuracy=0.95)  # doctest: +SKIP
>>> report.passed, report.results[0]["p50_us"]  # doctest: +SKIP

Targets (``device``) live in one registry, :data:`TARGETS`; ``cpu`` is this machine.
"""

from __future__ import annotations

from edgekd.benchmark.errors import BenchError
from edgekd.benchmark.report import BenchReport
from edgekd.benchmark.run import bench, latest_bundle
from edgekd.benchmark.targets import TARGETS, BenchTarget, Job

__all__ = ["TARGETS", "BenchError", "BenchReport", "BenchTarget", "Job", "bench", "latest_bundle"]
