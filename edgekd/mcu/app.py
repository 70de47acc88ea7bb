"""The microcontroller application for one int8 model, end to end: pick self-test samples and the
host's int8 outputs for them (:mod:`edgekd.mcu.hostref`), write the config header and model array
(:mod:`edgekd.mcu.codegen`), build deploy/mcu/main.cc against TFLite Micro + CMSIS-NN for a
Cortex-M core (:mod:`edgekd.mcu.build`), and optionally run it on the core's QEMU board and compare
every output value with the host's (:mod:`edgekd.mcu.emulate`).

``mcu_build`` is what ``edgekd mcu build`` calls; ``main`` runs :func:`build_and_run` in a worker
process for ``edgekd bench --device mcu --emulate`` (a crash fails the row, not the bench).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.atomic import write_json
from edgekd.errors import EdgekdError
from edgekd.outputs import MCU_BUILD_MARKER as MARKER
from edgekd.paths import input_file
from edgekd.procs import worker_main

ROLES = ("student", "teacher", "baseline")
DEFAULT_SAMPLES = 4  # eval images per build: enough to catch a kernel that differs, cheap to embed


class McuBuildError(EdgekdError):
    """Bad input to ``edgekd mcu build`` (a missing model, a folder edgekd did not make, …)."""


def _check_out(out: Path, model_path: Path) -> None:
    """``out`` must be new, empty or made by an earlier build (never a user's folder, never one
    holding the model being built). A folder holding only a user's hidden entries counts as empty:
    re-exporting a bundle carries a ``.DS_Store`` of ``mcu/<build>/`` into a folder of its own, and
    a build deletes only files it names."""
    from edgekd.outputs import check_output_dir, holds_only_kept_hidden

    def why_not_ours(folder: Path) -> str | None:
        return None if (folder / MARKER).is_file() or holds_only_kept_hidden(folder) else f"no {MARKER} in it"

    check_output_dir(out, "MCU build", why_not_ours, protect=[model_path])


def _check_int8_model(model_path: Path) -> Any:
    """The parsed ``.tflite`` when it is a full-integer int8 model; one line otherwise."""
    from edgekd.tflite_file import read_tflite

    model = read_tflite(model_path)
    if not model.is_int8:
        raise McuBuildError(f"{model_path.name} is not a full-integer int8 model")
    return model


def _prepare_out(out: Path, model_path: Path) -> None:
    """``out`` checked (:func:`_check_out`), then made and marked as edgekd's."""
    _check_out(out, model_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("edgekd mcu build output; safe to delete\n")


def eval_images(
    eval_path: Path | None, targets_key: str, shape: tuple[int, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(uint8 NHWC images, class labels or None, where they came from). Without eval data: 64
    uniformly random images from a fixed seed, enough for a bit-exactness check. Eval data that
    is not uint8 N×H×W×C of the model's ``shape`` (float or NaN images, a count that differs from
    the targets', a truncated file) is one :class:`McuBuildError` line, as in the bench."""
    if eval_path is not None:
        from edgekd.tasks import TaskError, read_eval, task_for_targets

        try:
            images, targets = read_eval(eval_path, targets_key)
        except TaskError as exc:
            raise McuBuildError(str(exc)) from None
        try:
            task_for_targets(targets_key).check_images(images, targets)  # as bench checks them
        except TaskError as exc:
            raise McuBuildError(f"eval data {eval_path.name} is malformed: {exc} (re-export the bundle)") from None
        if tuple(images.shape[1:]) != tuple(shape):
            raise McuBuildError(
                f"{eval_path.name}: images are {'×'.join(map(str, images.shape[1:]))}, the model takes "
                f"{'×'.join(map(str, shape))}"
            )
        return images, (targets if targets.ndim == 1 else None), eval_path.name
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(64, *shape), dtype=np.uint8), None, f"random images (seed {seed})"


def resolve_model(
    model: str | Path | None, artifacts: str | Path | None, role: str = "student"
) -> tuple[Path, Path | None, str]:
    """(int8 .tflite, eval.npz or None, targets key) from ``--model`` or a bundle folder."""
    if (model is None) == (artifacts is None):
        raise McuBuildError("give exactly one of --model FILE or --artifacts DIR")
    if model is not None:
        return input_file(model, "--model", McuBuildError), None, "labels"  # a folder or device is said so
    if role not in ROLES:
        raise McuBuildError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    from edgekd.bundle import require_verified

    bundle = Path(artifacts)  # type: ignore[arg-type]
    manifest = require_verified(bundle)  # sha256 of every file, as the bench does
    path = bundle / f"{role}_int8.tflite"
    if not path.is_file():
        raise McuBuildError(f"--artifacts {bundle}: no {path.name} (export with int8)")
    from edgekd.tasks import get_task

    task = get_task(manifest.get("task"))
    eval_path = bundle / "eval.npz"
    return path, (eval_path if eval_path.is_file() else None), task.targets_key


def build_app_for(
    model_path: Path,
    out: Path,
    core: str,
    eval_path: Path | None = None,
    targets_key: str = "labels",
    tflm: str | Path | None = None,
    kernels: str = "model",
    samples: int = DEFAULT_SAMPLES,
    cache: str | Path | None = None,
    jobs: int | None = None,
    log: Any = None,
    checked: tuple[Any, tuple[np.ndarray, np.ndarray | None, str]] | None = None,
) -> dict[str, Any]:
    """Samples → header → ELF in ``out``. Returns the build's figures (see :class:`~edgekd.mcu.build.BuildResult`)
    with the samples' host outputs under ``"expected"``. ``checked``: the int8 model file and the
    eval images as :func:`mcu_build` already read and checked them (read here otherwise)."""
    from edgekd.data.cache import cache_root
    from edgekd.mcu import build, codegen, estimate, hostref, sources, toolchain

    if not 1 <= samples <= 64:
        raise McuBuildError(f"--samples must be 1-64, got {samples}")
    toolchain.BOARDS.get(core)  # unknown core: a did-you-mean error before any work
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++"):
        toolchain.require(tool)
    model, (images, labels, origin) = checked or _model_and_eval(model_path, eval_path, targets_key)
    root = cache_root(str(cache) if cache else None)
    tree = sources.resolve(tflm, root / "mcu")
    picked, arena = hostref.pick_samples(model_path, images, labels, samples)
    if arena is None:
        raise McuBuildError(f"{model_path.name}: TFLite Micro on the host reported no arena size")
    build.clear_app_dir(out)
    header = codegen.write_app_config(model_path, {"arena_bytes": arena}, out, picked)
    data_cc = model_path.parent / f"{model_path.stem}_model_data.cc"
    if not data_cc.is_file():
        data_cc = out / f"{model_path.stem}_model_data.cc"  # written beside the header for a lone model
    result = build.build_app(
        out, header, data_cc, model.op_names, core, tree, root, kernels=kernels, jobs=jobs, log=log
    )
    info = result.as_dict()
    info.update(
        model=str(model_path),
        model_bytes=model.size_bytes,
        arena_host_bytes=arena,
        samples_from=origin,
        host_flash_estimate_bytes=estimate.flash_bytes(model),
        ops=model.op_names,
        macs=model.total_macs,
    )
    info["expected"] = [list(s.expected or []) for s in picked]
    info["labels"] = [s.label for s in picked]
    return info


def compare(expected: list[list[int]], outputs: dict[int, list[int]]) -> list[str]:
    """One line per sample whose device output differs from the host's (empty: bit-exact)."""
    problems = []
    for i, want in enumerate(expected):
        got = outputs.get(i)
        if got is None:
            problems.append(f"sample {i}: no output printed")
        elif len(got) != len(want):
            problems.append(f"sample {i}: {len(got)} output values, the host has {len(want)}")
        else:
            diff = [j for j, (a, b) in enumerate(zip(got, want)) if a != b]
            if diff:
                j = diff[0]
                problems.append(
                    f"sample {i}: {len(diff)} of {len(want)} values differ (first: [{j}] device {got[j]}, host "
                    f"{want[j]})"
                )
    return problems


def _model_and_eval(
    model_path: Path, eval_path: Path | None, targets_key: str
) -> tuple[Any, tuple[np.ndarray, np.ndarray | None, str]]:
    """The int8 model file, checked, and the eval images for its input shape (:func:`eval_images`)."""
    model = _check_int8_model(model_path)
    return model, eval_images(eval_path, targets_key, tuple(model.tensors[model.inputs[0]].shape[1:]))


def build_and_run(model_path: Path, out: Path, core: str, **kw: Any) -> dict[str, Any]:
    """Build, run on the QEMU board, compare with the host: the dict the bench row keeps."""
    from edgekd.mcu import cpi, emulate

    info = build_app_for(model_path, out, core, **kw)
    run = emulate.run(info["elf"], core)
    problems = compare(info["expected"], run.outputs)
    if run.exit_code != 0 and not problems:
        tail = [line for line in run.log.strip().splitlines() if line.strip()][-1:] or ["no output"]
        problems.append(f"the app exited with {run.exit_code}: {tail[0][:200]}")
    emu = run.as_dict()
    info.update(
        emulated=emu,
        bit_exact=not problems,
        problems=problems,
        app_self_check=all(run.app_ok.values()) and len(run.app_ok) == len(info["expected"]),
    )
    if emu["instructions"]:
        info["est_cycles"] = round(cpi.cycles_from_instructions(emu["instructions"], core))
    return info


def mcu_build(
    model: str | Path | None = None,
    artifacts: str | Path | None = None,
    core: str = "cortex-m4",
    out: str | Path | None = None,
    tflm: str | Path | None = None,
    kernels: str = "model",
    samples: int = DEFAULT_SAMPLES,
    run: bool = False,
    role: str = "student",
    jobs: int | None = None,
) -> dict[str, Any]:
    """``edgekd mcu build``: the ELF for a bundle's int8 model (or one ``.tflite``) and a core, its
    flash/RAM from the linker map next to the host estimate; ``run``: also run it on the core's
    QEMU board and check the outputs bit for bit against the host TFLM interpreter."""
    from edgekd import ui
    from edgekd.mcu import build, toolchain

    model_path, eval_path, key = resolve_model(model, artifacts, role)
    # every check before the first write: a bad core, kernels mode, sample count or a missing tool
    toolchain.BOARDS.get(core)
    if kernels not in build.KERNEL_MODES:
        raise McuBuildError(f"--kernels must be one of {', '.join(build.KERNEL_MODES)}, got {kernels!r}")
    if not 1 <= samples <= 64:
        raise McuBuildError(f"--samples must be 1-64, got {samples}")
    if jobs is not None and not 1 <= jobs <= 256:
        raise McuBuildError(f"--jobs must be 1-256, got {jobs}")
    if out is None:
        if artifacts is None:
            raise McuBuildError("--out DIR is required with --model")
        out = Path(artifacts) / "mcu" / core
    out = Path(out)
    # the user's input first (a wrong --out, a model that is no int8 file, malformed eval images),
    # named whatever is installed; the tools and the sources too, before the folder is made
    _check_out(out, model_path)
    checked = _model_and_eval(model_path, eval_path, key)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", *(("qemu-system-arm",) if run else ())):
        toolchain.require(tool)
    from edgekd.data.cache import cache_root
    from edgekd.mcu import sources

    sources.resolve(tflm, cache_root(None) / "mcu")  # unpacked into edgekd's cache once; the build reuses it
    _prepare_out(out, model_path)
    kw = dict(
        eval_path=eval_path,
        targets_key=key,
        tflm=tflm,
        kernels=kernels,
        samples=samples,
        jobs=jobs,
        log=ui.log,
        checked=checked,  # the model and eval images as read above, before the first write: not read again
    )
    info = build_and_run(model_path, out, core, **kw) if run else build_app_for(model_path, out, core, **kw)
    write_json(out / "build.json", info)
    return info


def _build_job(job: dict[str, Any]) -> dict[str, Any]:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    info = build_and_run(
        Path(job["file"]),
        out,
        job["core"],
        eval_path=Path(job["eval"]) if job.get("eval") else None,
        targets_key=job.get("targets_key", "labels"),
        tflm=job.get("tflm"),
        kernels=job.get("kernels", "model"),
        samples=int(job.get("samples", DEFAULT_SAMPLES)),
    )
    result = {"status": "ok" if info["bit_exact"] else "failed", **info}
    if not info["bit_exact"]:
        result.update(
            stage="emulate",
            reason=f"{job['core']}: output differs from the host TFLM: {'; '.join(info['problems'])[:300]}",
        )
    return result


def main(argv: list[str]) -> int:
    """``JOB.json RESULT.json`` (the bench's worker protocol): job {"file", "eval", "targets_key",
    "core", "out", "tflm", "kernels", "samples"} → {"status": "ok" | "failed", …}."""
    return worker_main(argv, _build_job, stage="build", expected=(EdgekdError,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def summary_lines(info: dict[str, Any]) -> list[str]:
    """What ``edgekd mcu build`` prints: sizes from the map next to the host estimate, and with
    ``--run`` the bit-exactness, instructions per inference and the top operators."""
    kb = 1024
    s = info["sections"]
    lines = [
        f"mcu build: {Path(info['model']).name} for {info['core']} ({info['board']}): {info['elf']} "
        f"({info['compiled']} files compiled, {info['cached']} cached, {info['build_s']:.1f} s, kernels: "
        f"{info['kernels']})",
        f"  flash {info['flash_bytes'] / kb:,.1f} KB from the linker map (text {s.get('.text', 0) / kb:,.1f} + rodata "
        f"{s.get('.rodata', 0) / kb:,.1f}"
        f" + data {s.get('.data', 0) / kb:,.1f}; the model is {info['model_bytes'] / kb:,.1f}), host estimate "
        f"{info['host_flash_estimate_bytes'] / kb:,.1f} KB",
        f"  RAM {info['ram_bytes'] / kb:,.1f} KB from the linker map (data + bss, tensor arena included; stack and "
        "heap not counted;"
        f" profiling buffers {info['profiler_bytes'] / kb:,.1f} KB left out), arena measured on the host "
        f"{info['arena_host_bytes'] / kb:,.1f} KB",
    ]
    emu = info.get("emulated")
    if emu:
        n = len(info["expected"])
        verdict = (
            f"all {n} samples bit-exact with the host TFLM"
            if info["bit_exact"]
            else "OUTPUTS DIFFER: " + "; ".join(info["problems"])
        )
        lines.append(
            f"  {emu['board']}: {verdict}; arena used on the device {(emu['arena_used_bytes'] or 0) / kb:,.1f} KB"
        )
        if emu["instructions"]:
            lines.append(
                f"  instructions per inference {emu['instructions']:,} (samples "
                f"{emu['instructions_min']:,}–{emu['instructions_max']:,}), "
                f"≈ {info['est_cycles']:,} cycles with TFLM + CMSIS-NN (edgekd.mcu.cpi)"
            )
            top = ", ".join(f"{r['op']} {100 * r['share']:.1f} %" for r in emu["per_op"][:4])
            lines.append(f"  top operators by instruction share: {top}")
    return lines
