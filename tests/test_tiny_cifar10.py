"""The tiny CIFAR-10 benchmark end to end on a subset: one short epoch per model (slow: minutes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import CIFAR10_TARBALL, REPO, SHARED_DATA

REFERENCE = SHARED_DATA / "mlperf-tiny" / "resnet8_quant.tflite"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("tiny_cifar10", REPO / "benchmarks" / "tiny_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_arguments_exit_2_and_qat_is_detected() -> None:
    """Fast: the argument checks, and the QAT detection that decides the kd+qat row."""
    bench = load_benchmark()
    assert bench.main(["--epochs", "0"]) == 2
    assert isinstance(bench.has_qat(), bool)


@pytest.mark.slow
def test_tiny_recipe_runs_end_to_end_on_a_subset(tmp_path: Path) -> None:
    if not CIFAR10_TARBALL.is_file() or not REFERENCE.is_file():
        pytest.skip(f"needs {CIFAR10_TARBALL} and {REFERENCE}")
    bench = load_benchmark()
    out = tmp_path / "bench"
    assert (
        bench.main(
            [
                "--fast",
                "--subset",
                "2000",
                "--epochs",
                "1",
                "--seeds",
                "1",
                "--out",
                str(out),
                "--data",
                str(CIFAR10_TARBALL),
                "--reference",
                str(REFERENCE),
                # a narrow airbench and two cached views: the same code path, minutes not tens of minutes
                "--set",
                "teacher.kwargs={widths: [16, 32, 32]}",
                "--set",
                "data.views=2",
                # the QAT int8 file of a 1-epoch student does not load in LiteRT yet (XNNPACK prepare fails)
                "--no-qat",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    rows = {r["row"]: r for r in result["table"]}
    assert {"mlperf-ref", "nokd", "kd"} <= set(rows)
    assert ("kd+qat" in rows) == result["settings"]["qat"] or result["notes"]
    ref = rows["mlperf-ref"]
    assert ref["within_budget"] and 0.6 < ref["acc_mean"] < 0.95 and ref["macs"] > 12e6  # measured 75.4 % on this split
    for name in ("nokd", "kd"):
        r = rows[name]
        assert r["kb"] <= 100 and r["macs"] <= 12.6e6 and 0.1 <= r["acc_mean"] <= 1 and r["host_ms_1t"] > 0
        assert set(r["mcu_ms"]) == set(ref["mcu_ms"])
    assert result["teacher"]["arch"] == "airbench"
    assert {"teacher", "seed0 student", "seed0 baseline", "seed0 export", "total"} <= set(result["wall_s"])
