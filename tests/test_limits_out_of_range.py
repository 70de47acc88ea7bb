"""edgekd.limits.out_of_range: check_number's lines for every flag of a script at once (the benchmarks)."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys

from edgekd.limits import out_of_range


def ns(**values: float | None) -> argparse.Namespace:
    return argparse.Namespace(**values)


def test_each_kind_of_range_in_check_numbers_words() -> None:
    args = ns(runs=0, batch_size=-3, temperature=0.0, limit_s=-1.5, alpha=1.5)
    assert out_of_range(
        args, at_least={"runs": 1, "batch_size": 1}, positive=("temperature", "limit_s"), fractions=("alpha",)
    ) == [
        "--runs must be an integer of at least 1, got 0",
        "--batch-size must be an integer of at least 1, got -3",
        "--temperature must be a number above 0, got 0",
        "--limit-s must be a number above 0, got -1.5",
        "--alpha must be a number from 0 to 1, got 1.5",
    ]


def test_values_in_range_and_on_the_bounds_pass() -> None:
    args = ns(runs=1, warmup=0, temperature=1e-9, alpha=0.0, beta=1.0, gamma=0.5)
    assert out_of_range(args, at_least={"runs": 1, "warmup": 0}, positive=("temperature",)) == []
    assert out_of_range(args, fractions=("alpha", "beta", "gamma")) == []


def test_none_is_an_unset_optional_and_nan_fails_every_check() -> None:
    unset = ns(threads=None, limit_s=None, min_accuracy=None)
    assert out_of_range(unset, at_least={"threads": 1}, positive=("limit_s",), fractions=("min_accuracy",)) == []
    nan = ns(runs=math.nan, temperature=math.nan, alpha=math.nan)
    problems = out_of_range(nan, at_least={"runs": 1}, positive=("temperature",), fractions=("alpha",))
    assert [p.split()[0] for p in problems] == ["--runs", "--temperature", "--alpha"]
    assert all("must be a finite number" in p and p.endswith("got nan") for p in problems)


def test_import_is_light() -> None:
    probe = "import edgekd.limits, sys; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "edgekd" in loaded and not loaded & {"torch", "numpy"}, loaded & {"torch", "numpy"}
