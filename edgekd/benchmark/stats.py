"""Latency statistics of one model and the rule that flags a measurement as too noisy to trust.

Numpy only: this runs inside the per-model benchmark process, also on a Raspberry Pi.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (p90 − p50) / p50 above this: the upper tail is wide against the median, so the median moved
# with load from other processes or frequency changes and the row is flagged "noisy". 25 % is well
# above the few percent a quiet machine shows for batch-1 CNN inference.
NOISY_SPREAD = 0.25
# std / mean above this: rare long stalls (preemption, page faults) dominate the mean, so mean and
# throughput (1 / mean) are not representative even when the median is.
NOISY_CV = 0.5


def latency_stats(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """{min_us, p50_us, p90_us, p99_us, mean_us, std_us}: microseconds, from per-run durations in
    nanoseconds (the bench row's latency fields).

    Percentiles interpolate linearly, so with fewer than 100 runs p99 lies between the two slowest
    runs rather than being a measured 99th percentile."""
    t = np.asarray(ns, dtype=np.float64) / 1e3  # ns → µs
    if t.ndim != 1 or len(t) == 0:
        raise ValueError("latency_stats needs a non-empty 1-d sequence of durations")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {
        "min_us": float(t.min()),
        "p50_us": float(p50),
        "p90_us": float(p90),
        "p99_us": float(p99),
        "mean_us": float(t.mean()),
        "std_us": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
    }


def spread(stats: dict[str, float]) -> float:
    """(p90 − p50) / p50: how far the slow tail reaches above the median, as a fraction."""
    return (stats["p90_us"] - stats["p50_us"]) / stats["p50_us"] if stats["p50_us"] > 0 else float("inf")


def cv(stats: dict[str, float]) -> float:
    """Coefficient of variation std / mean."""
    return stats["std_us"] / stats["mean_us"] if stats["mean_us"] > 0 else float("inf")


def is_noisy(stats: dict[str, float]) -> bool:
    return spread(stats) > NOISY_SPREAD or cv(stats) > NOISY_CV
