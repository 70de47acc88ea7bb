"""A candidate's budget figures, before any training: parameters and MACs from PyTorch, then the
full-integer int8 TFLite model of the UNTRAINED network (the same converter as `edgekd export`)
for flash, tensor arena and latency.

Why an untrained export is exact: flash (flatbuffer + runtime kernels), the TFLite Micro arena and
the MCU latency estimate depend on the graph, the tensor shapes and the op mix, not on the weight
values; trained weights of the same candidate give the same figures. Cheap checks run first: a
candidate ruled out by its parameters, MACs or a lower bound on the int8 figures (every weight takes
at least a byte) is never exported.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from edgekd.atomic import write_json
from edgekd.jsonfile import cached_json_object
from edgekd.search.budget import Budget
from edgekd.search.space import Candidate

FIGURES_VERSION = 2  # bump when what a figure means changes: cached figures are then recomputed
HOST_RUNS = 100  # timed invokes of the host latency (median), after HOST_WARMUP untimed ones
HOST_WARMUP = 10


def measure_candidate(
    cand: Candidate,
    budget: Budget,
    *,
    num_classes: int,
    in_channels: int,
    native_size: tuple[int, int],
    backend: str = "onnx2tf",
    cache_dir: Path | None = None,
    rpi_factor: float | None = None,
) -> dict[str, Any]:
    """{params, macs, flash_kb, model_kb, ram_kb, latency_ms, host_ms, rpi_ms, ops} of ``cand``. The
    int8 figures come only when the budget has a flash, RAM or latency limit; ``latency_ms`` needs
    ``budget.device``, ``host_ms`` a host or Pi limit, ``rpi_ms`` a Pi limit and ``rpi_factor`` (the
    Pi/host latency ratio, :mod:`edgekd.search.rpi`). Cached per candidate in ``cache_dir``."""
    if budget.rpi_ms is not None and not rpi_factor:
        raise ValueError("an rpi_ms budget needs rpi_factor")
    path = cache_dir / f"{cand.key}.json" if cache_dir is not None else None
    cached = cached_json_object(path) if path is not None else None  # unreadable: measured again
    if cached is not None:
        if _well_formed(cached, cand) and _usable(cached, budget, rpi_factor):
            return cached
    figures = _measure(cand, budget, num_classes, in_channels, native_size, backend, rpi_factor)
    if path is not None:
        write_json(path, figures)
    return figures


# what the figures hold, by kind: a cached file edited to other types is measured again, not
# compared with the budget ("'>' not supported between 'str' and 'float'" in every trial)
_NUMBERS = ("params", "macs", "weight_bytes", "model_kb", "flash_kb", "ram_kb", "latency_ms", "host_ms", "rpi_ms")
_REQUIRED = ("params", "macs", "weight_bytes")


def _well_formed(cached: dict[str, Any], cand: Candidate) -> bool:
    from edgekd.limits import is_finite_number

    if cached.get("candidate") != cand.to_dict() or any(key not in cached for key in _REQUIRED):
        return False
    if not all(is_finite_number(cached[key]) and cached[key] >= 0 for key in _NUMBERS if key in cached):
        return False
    if cached.get("tflite") and not ("model_kb" in cached and "flash_kb" in cached):
        return False
    ops = cached.get("ops", [])
    return isinstance(ops, list) and all(isinstance(op, str) for op in ops)


def _usable(cached: dict[str, Any], budget: Budget, rpi_factor: float | None = None) -> bool:
    """Whether cached figures answer ``budget``: same version and MCU profile, and either a full
    set (with the host latency and the Pi estimate when asked for) or an early stop that the limits
    still cause."""
    if cached.get("version") != FIGURES_VERSION or cached.get("device") != budget.device:
        return False
    if cached.get("tflite"):
        if budget.rpi_ms is not None and cached.get("rpi_factor") != rpi_factor:
            return False
        return (budget.host_ms is None and budget.rpi_ms is None) or "host_ms" in cached
    return not budget.needs_tflite() or bool(early_violations(cached, budget))


def early_violations(figures: dict[str, Any], budget: Budget) -> list[str]:
    """What rules a candidate out from PyTorch figures alone: the parameter and MAC limits, and
    lower bounds on the int8 figures. Every conv/linear weight takes at least one byte in the int8
    model (biases, quantization parameters and the graph only add to it), and every MAC at least the
    CONV_2D cost of the latency estimate (the TFLite graph has the same MACs plus the input
    normalization, and other ops cost more), so a bound over the limit means the export would be too."""
    from edgekd.mcu import profiles as P

    over = Budget(params=budget.params, macs=budget.macs).violations(figures)
    weights_kb = figures.get("weight_bytes", 0) / 1024
    if budget.model_kb is not None and weights_kb > budget.model_kb:
        over.append(f"model_kb ≥ {weights_kb:,.1f} (int8 weights alone) > {budget.model_kb:,.4g}")
    flash_min = weights_kb + P.RUNTIME_BASE_BYTES / 1024
    if budget.flash_kb is not None and flash_min > budget.flash_kb:
        over.append(f"flash_kb ≥ {flash_min:,.1f} (int8 weights + runtime base) > {budget.flash_kb:,.4g}")
    if budget.latency_ms is not None and budget.device is not None:
        profile = P.PROFILES.get(budget.device)
        ms_min = figures["macs"] * P.CONV_CYCLES_PER_MAC * profile.factor / (profile.mhz * 1e3)
        if ms_min > budget.latency_ms:
            over.append(f"latency_ms ≥ {ms_min:,.4g} (MACs at the CONV_2D cost) > {budget.latency_ms:,.4g}")
    return over


def _measure(
    cand: Candidate,
    budget: Budget,
    num_classes: int,
    in_channels: int,
    native_size: tuple[int, int],
    backend: str,
    rpi_factor: float | None = None,
) -> dict[str, Any]:
    import numpy as np
    import torch

    from edgekd.models import count_macs, count_params, create_model

    size = native_size if cand.resolution is None else (cand.resolution, cand.resolution)
    torch.manual_seed(0)
    model = create_model(cand.arch, num_classes, in_channels, size, **cand.kwargs).eval()
    figures: dict[str, Any] = {
        "version": FIGURES_VERSION,
        "candidate": cand.to_dict(),
        "input": [in_channels, *size],
        "params": count_params(model),
        "macs": count_macs(model, (1, in_channels, *size)),
        # conv and linear weights: one int8 byte each in the exported model (batch norm folds away)
        "weight_bytes": sum(
            m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ),
        "device": budget.device,
    }
    if early_violations(figures, budget):
        figures["early_stop"] = True  # ruled out by PyTorch figures alone: not exported
        return figures
    if not budget.needs_tflite():
        return figures  # a params/MACs budget: the int8 export would only add figures nobody asked for
    from edgekd.exporters.to_tflite import TFLITE_BACKENDS, TFLiteRequest
    from edgekd.mcu import estimate
    from edgekd.mcu.profiles import PROFILES
    from edgekd.models.wrappers import with_preprocessing
    from edgekd.tflite_file import read_tflite

    # weights and ranges do not change sizes, the arena or the op mix: fixed random statistics and
    # random calibration images keep this independent of the data
    wrapped = with_preprocessing(model, [0.5] * in_channels, [0.25] * in_channels)
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (32, *size, in_channels), dtype=np.uint8)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-search-") as tmp:
        out = Path(tmp) / "candidate_int8.tflite"
        request = TFLiteRequest(
            model=wrapped,
            input_shape=(1, in_channels, *size),
            outputs={"tflite_int8": out},
            calibration=calibration,
            name=cand.key,
            work_dir=Path(tmp),
        )
        TFLITE_BACKENDS.get(backend)(request)
        tfl = read_tflite(out)
        figures["export_s"] = round(time.perf_counter() - start, 2)
        figures["tflite"] = True
        figures["model_kb"] = round(tfl.size_bytes / 1024, 3)
        figures["flash_kb"] = round(estimate.flash_bytes(tfl) / 1024, 3)  # as `edgekd bench --device mcu`
        figures["ops"] = tfl.op_names
        if budget.device is not None:
            figures["latency_ms"] = round(estimate.estimate_ms(tfl, PROFILES.get(budget.device)), 3)
        arena = tflm_arena_kb(out)
        figures.update(arena)
        if budget.host_ms is not None or budget.rpi_ms is not None:
            figures["host_ms"] = host_latency_ms(out)
        if budget.rpi_ms is not None:
            # an estimate: this host's latency × one reference model's Pi/host ratio (search/rpi.py)
            figures["rpi_ms"] = round(figures["host_ms"] * rpi_factor, 4)
            figures["rpi_factor"] = rpi_factor
    return figures


def tflm_arena_kb(path: Path) -> dict[str, Any]:
    """{ram_kb} of ``path`` under TFLite Micro (a fresh process, as the bench), or {tflm_error}."""
    from edgekd.benchmark.targets import run_worker

    result = run_worker(
        {"file": str(path), "eval": None, "num_classes": 0, "task": "classification"},
        "edgekd.benchmark.mcu_worker",
        None,
        600.0,
    )
    arena = (result.get("tflm") or {}).get("arena_bytes")
    if result.get("status") != "ok" or arena is None:
        return {"tflm_error": result.get("reason", "no arena reported")}
    return {"ram_kb": round(arena / 1024, 3)}


def host_latency_ms(path: Path) -> float:
    """Median batch-1 latency (ms) of the int8 model on this host, 1 thread (ai-edge-litert)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    times = []
    for i in range(HOST_WARMUP + HOST_RUNS):
        t = time.perf_counter()
        interp.invoke()
        if i >= HOST_WARMUP:
            times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1e3, 4)
