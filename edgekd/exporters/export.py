"""``edgekd export``: a distill run → a self-contained, checksummed artifact bundle.

Bundle layout (copied as-is to a Raspberry Pi or into an MCU project)::

    student.pt  student.onnx  student_fp32.tflite  student_int8.tflite   (+ _fp16, _dynamic on request)
    teacher.pt  teacher.onnx  teacher_fp32.tflite
    student_qat_int8.tflite          with distill.qat (unless export.qat=false): the QAT student, full
                                     integer, its learned scales kept
    quant_report.json                per int8 file and layer: SNR vs float, ranges, scale, clipped share, likely fix
    student_int8_model_data.cc/.h    the int8 model as a C array for TensorFlow Lite Micro
    eval.npz                         held-out raw uint8 images (NHWC) + labels (segmentation: masks) + class names
    config.yaml  summary.json        the run's resolved config (with export settings) and results
    manifest.json                    inputs/outputs of every model, labels, metrics, versions, sha256

Every model takes raw pixel values (0–255): the training normalization is part of the graph.
The bundle is built in a temporary folder and renamed into place only when complete. What the
targets, parity metrics and output shapes are comes from the run's task (:mod:`edgekd.tasks`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import __version__
from edgekd.atomic import atomic_dir, write_json, write_text, write_with
from edgekd.bundle import FORMAT, MANIFEST, file_record
from edgekd.config import (
    Config,
    ExportConfig,
    dump_yaml,
    from_dict,
    load_saved_config,
    named_archs,
    parse_override,
    to_dict,
)
from edgekd.errors import ConfigError, EdgekdError
from edgekd.exporters.errors import ParityError
from edgekd.exporters.parity import Bounds, check_parity, reference_logits
from edgekd.exporters.timing import shown_as
from edgekd.formats import ExportJob, Format, all_formats, check_export_formats, get_format
from edgekd.jsonfile import read_json_object
from edgekd.outputs import check_output_dir, kept_hidden, not_a_bundle_to_replace
from edgekd.paths import as_path
from edgekd.tasks import get_task
from edgekd.ui import log, print_table

ROLES = ("student", "teacher", "baseline")
QAT_ROLE = "student_qat"  # the QAT student (distill.qat): exported as its int8 file beside the student's


def latest_run(runs_dir: Path = Path("runs")) -> Path:
    runs = [p.parent for p in runs_dir.glob("*/summary.json")]
    if not runs:
        raise EdgekdError(f"no finished run in {runs_dir}/ (run `edgekd distill` first, or pass --run DIR)")
    return max(runs, key=lambda p: (p / "summary.json").stat().st_mtime)


def run_summary(run: Path) -> dict[str, Any]:
    """A finished distill run's summary.json, or one line saying why the folder is not such a run."""
    path = run / "summary.json"
    if not path.is_file() or not (run / "config.yaml").is_file():
        raise EdgekdError(
            f"{run} is not a finished distill run (summary.json/config.yaml missing); run `edgekd distill --out {run}` "
            "first"
        )
    if (run / MANIFEST).exists():
        # a bundle holds config.yaml, summary.json and student.pt too: exporting it would export
        # the export (its run is named in the manifest, and may be gone)
        raise EdgekdError(f"{run} is an edgekd bundle, not a distill run: pass the run folder it was exported from")
    return read_json_object(path, "rerun `edgekd distill`")


def run_config(run: Path, overrides: Sequence[str] = ()) -> Config:
    """A finished run's config with ``export.*`` overrides applied (the run's other settings are fixed)."""
    cfg = load_saved_config(run / "config.yaml")
    export_tree = to_dict(cfg.export)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "export" or len(keys) != 2:
            raise ConfigError(
                f"--set {'.'.join(keys)}: export takes export.* keys only (the run's other settings are fixed)"
            )
        export_tree[keys[1]] = value
    cfg = dataclasses.replace(cfg, export=from_dict(ExportConfig, export_tree, prefix="export."))
    from edgekd.config import validate

    validate(cfg)
    check_export_names(cfg.export)
    return cfg


def check_export_names(ecfg: ExportConfig) -> None:
    """Every name in the export settings resolves (formats, backend, models), each given once."""
    for key in ("models", "formats", "teacher_formats"):
        names = list(getattr(ecfg, key) or ())
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice is not None:  # converted twice, the second file replacing the first
            raise ConfigError(f"config: export.{key} lists {twice} twice")
    check_export_formats({"export.formats": ecfg.formats, "export.teacher_formats": ecfg.teacher_formats})
    from edgekd.exporters.to_tflite import TFLITE_BACKENDS

    if ecfg.backend not in TFLITE_BACKENDS:
        raise ConfigError(f"config: export.backend: {TFLITE_BACKENDS.unknown_message(ecfg.backend)}")
    if not ecfg.models:  # a bundle with nothing in it would verify and bench as "ok"
        raise ConfigError(f"config: export.models is empty: name at least one of {', '.join(ROLES)}")
    bad_roles = [r for r in ecfg.models if r not in ROLES]
    if bad_roles:
        raise ConfigError(f"config: export.models: unknown model {bad_roles[0]!r}; available: {', '.join(ROLES)}")
    if "student" in ecfg.models and not ecfg.formats:  # the student would be left out without a word
        raise ConfigError(
            "config: export.formats is empty, so the student that export.models names would not be exported: "
            "name a format, or leave the student out of export.models"
        )


def balanced_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded, class-balanced-as-possible sample of ``n`` indices (all of them if n ≥ len)."""
    if n >= len(labels):
        return np.arange(len(labels))
    from edgekd.data.split import stratified_split

    _, held = stratified_split(labels, n / len(labels), seed)
    return held[:n] if len(held) >= n else np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])


def export(
    run: str | Path | None = None,
    out: str | Path | None = None,
    set: Sequence[str] = (),  # noqa: A002 - same name as the CLI's --set
    allow_parity_failure: bool | None = None,
) -> dict[str, Any]:
    """Export a finished distill run into a bundle; returns the manifest.

    Raises :class:`ParityError` (after writing the bundle, which records the failure) when a
    format is out of bounds, unless ``allow_parity_failure`` (or ``export.allow_parity_failure``).
    """
    run_dir = as_path(run, "run") if run is not None else latest_run()
    summary = run_summary(run_dir)  # before any work: a damaged run is one line
    cfg = run_config(run_dir, set)
    out_dir = as_path(out, "out") if out is not None else Path("artifacts") / run_dir.name
    # before any work: a bundle replaces only an older bundle, never the run or a user's files (the
    # user's hidden ones in it, .DS_Store at its top level or in bench/, are moved into the new bundle)
    check_output_dir(out_dir, "bundle", not_a_bundle_to_replace, protect=[run_dir], beside=True)
    ecfg = cfg.export
    allow = ecfg.allow_parity_failure if allow_parity_failure is None else allow_parity_failure
    bounds = Bounds(
        ecfg.fp32_max_abs_diff, ecfg.min_top1_agreement, ecfg.max_acc_drop, ecfg.min_logit_snr_db, ecfg.max_class_share
    )

    from edgekd.checkpoint import build_model
    from edgekd.data import load_dataset
    from edgekd.exporters.lean import lean_for_export
    from edgekd.models import count_macs, count_params
    from edgekd.models.wrappers import with_preprocessing

    roles = [r for r in ecfg.models if (run_dir / f"{r}.pt").is_file()]
    missing = [r for r in ecfg.models if r not in roles and r != "baseline"]
    if missing:
        raise EdgekdError(f"{run_dir} has no {missing[0]}.pt to export")
    # before the data loads: a checkpoint that is not the run's is one line at once; each file is
    # read once, and the model exported is built from what was checked
    checkpoints = {role: check_role_checkpoint(run_dir / f"{role}.pt", role, cfg, summary) for role in roles}
    qat_ckpt = run_dir / f"{QAT_ROLE}.pt"
    qat = ecfg.qat and "student" in roles and "tflite_int8" in ecfg.formats and qat_ckpt.is_file()
    # the QAT student's file too (also refused when this edgekd cannot rebuild its graph)
    qat_checkpoint = check_role_checkpoint(qat_ckpt, QAT_ROLE, cfg, summary) if qat else None
    log(f"export: {run_dir} → {out_dir} ({', '.join(roles)})")
    data = load_dataset(cfg.data, log=log)
    task = get_task(data.task)
    test_targets = task.targets(data.test)  # class indices, or masks (N, 1, H, W)
    test_nhwc = data.test.images.transpose(0, 2, 3, 1)
    parity_idx = balanced_sample(data.test.labels, ecfg.parity_samples or len(data.test), cfg.seed)
    log(
        f"export: parity on {len(parity_idx)} of the {len(data.test)} test images "
        f"(export.parity_samples={ecfg.parity_samples})"
    )
    calib_idx = balanced_sample(data.train.labels, ecfg.calibration_samples, cfg.seed + 1)
    eval_idx = balanced_sample(data.test.labels, ecfg.eval_samples, cfg.seed + 2)
    calibration = np.ascontiguousarray(data.train.images[calib_idx].transpose(0, 2, 3, 1))

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run": {"name": cfg.name, "path": str(run_dir)},
        "task": task.name,
        "labels": list(data.classes),  # classes, or the mask's channel names (segmentation: ["foreground"])
        "preprocessing": {
            "input_range": [0, 255],
            "normalization": "folded into every model: feed raw pixel values",
            # the student's own (student.mean/std) when it has them; each file's: models[name].input
            "mean": list(data.mean),
            "std": list(data.std),
            # what `edgekd predict` / Predictor do to an image of another size or colour: the
            # training data's decoding (edgekd.data.imagefolder): to RGB, bilinear resize, then
            # one channel (ITU-R 601 luma) for a grayscale model
            "image_size": [int(test_nhwc.shape[1]), int(test_nhwc.shape[2])],
            "channels": int(test_nhwc.shape[3]),
            "resize": "bilinear",
        },
        "eval": {
            "file": "eval.npz",
            "count": int(len(eval_idx)),
            "layout": "NHWC",
            "dtype": "uint8",
            "split": "test",
            "targets": task.targets_key,  # labels (N,) int64, or masks (N, H, W) uint8 with 1 = foreground
            "metric": task.metric_label,
        },
        "versions": _versions(),
        "roles": {},
        "models": {},
        "metrics": {},
        "parity_bounds": dataclasses.asdict(bounds),
        "parity_images": {"used": int(len(parity_idx)), "test_split": int(len(data.test))},
    }
    failures: list[str] = []
    with atomic_dir(out_dir, carry=kept_hidden) as tmp, shown_as(tmp, out_dir):
        work = tmp / ".work"
        for role in roles:
            ckpt = checkpoints[role]
            model = build_model(ckpt, run_dir / f"{role}.pt", named_archs(cfg))  # the run's config names its archs
            mean, std = ckpt["data"]["mean"], ckpt["data"]["std"]  # the model's own normalization
            if role == "student":
                manifest["preprocessing"].update(mean=list(mean), std=list(std))
            wrapped = with_preprocessing(model, mean, std)
            c, (h, w) = len(mean), ckpt["data"]["image_size"]
            # the same function with fewer TFLite ops (exact; parity below compares against wrapped)
            lean, rewrites = lean_for_export(wrapped, (1, c, h, w))
            formats = ecfg.formats if role == "student" else ecfg.teacher_formats
            job = ExportJob(role, lean, ckpt, (1, c, h, w), ecfg, calibration, tmp, work)
            files = _export_role(job, formats)
            rec = summary.get(role, {})
            manifest["roles"][role] = {
                "arch": ckpt["arch"],
                # of the model exported, not summary.json's record of it (which a file can contradict)
                "params": count_params(model),
                "macs": count_macs(model, (1, c, h, w)),
                "val_acc": rec.get("val_acc"),
                "test_acc": rec.get("test_acc"),
                **{k: rec[k] for k in (f"val_{task.metric}", f"test_{task.metric}") if k in rec},  # val_iou, test_iou
                "files": files,
                "normalization": {"mean": list(mean), "std": list(std)},  # folded into its files
                "graph_rewrites": rewrites,  # edgekd.exporters.lean_for_export: what it rewrote
                **({"distill": ckpt["distill"]} if "distill" in ckpt else {}),
            }
            reference = reference_logits(wrapped, test_nhwc[parity_idx])
            for name in files:
                started = time.perf_counter()
                metrics = check_parity(
                    tmp / name,
                    test_nhwc[parity_idx],
                    test_targets[parity_idx],
                    reference,
                    bounds,
                    ecfg.threads,
                    task,
                    arch=named_archs(cfg),  # the bundle's student.pt is rebuilt as the run's config names it
                )
                metrics["seconds"] = round(time.perf_counter() - started, 2)  # the parity run of this file
                manifest["models"][name] = _model_entry(tmp / name, role, metrics["format"], ckpt, (1, c, h, w), task)
                manifest["metrics"][name] = metrics
                if not metrics["ok"]:
                    failures.append(f"{name}: {'; '.join(metrics['problems'])}")
        if qat_checkpoint is not None:
            # the QAT int8 file beside the PTQ one, checked against its own fake-quant graph
            from edgekd.exporters.to_tflite_qat import export_qat

            name = get_format("tflite_int8").file_name(QAT_ROLE)
            ckpt = qat_checkpoint
            qdq = export_qat(ckpt, qat_ckpt, tmp / name, named_archs(cfg))
            c, (h, w) = ckpt["data"]["in_channels"], ckpt["data"]["image_size"]
            rec = summary.get(QAT_ROLE, {})
            manifest["roles"][QAT_ROLE] = {
                "arch": ckpt["arch"],
                "val_acc": rec.get("val_acc"),
                "test_acc": rec.get("test_acc"),
                "files": [name],
                "qat": ckpt["qat"],
            }
            metrics = check_parity(
                tmp / name,
                test_nhwc[parity_idx],
                test_targets[parity_idx],
                reference_logits(qdq, test_nhwc[parity_idx]),
                bounds,
                ecfg.threads,
                task,
            )
            metrics["reference"] = "fake-quant PyTorch (QDQ graph)"
            manifest["models"][name] = _model_entry(tmp / name, QAT_ROLE, metrics["format"], ckpt, (1, c, h, w), task)
            manifest["metrics"][name] = metrics
            if not metrics["ok"]:
                failures.append(f"{name}: {'; '.join(metrics['problems'])}")
        shutil.rmtree(work, ignore_errors=True)
        from edgekd.exporters.quant_report import IMAGES, bundle_quant_report

        quant_report = bundle_quant_report(tmp, calibration[:IMAGES])  # every int8 file, layer by layer
        if quant_report is not None:
            write_json(tmp / "quant_report.json", quant_report)
        for name, m in manifest["metrics"].items():
            if m["format"] in ("tflite_int8", "tflite_int16x8"):  # TFLM has 16x8 kernels for some ops
                m["mcu"] = _mcu_support(tmp / name)
        images = np.ascontiguousarray(test_nhwc[eval_idx])
        targets = task.eval_targets(data.test, eval_idx)  # {"labels": …} or {"masks": (N, H, W) uint8}
        write_with(
            tmp / "eval.npz",
            lambda fh: np.savez_compressed(fh, images=images, **targets, classes=np.array(data.classes)),
        )
        write_text(tmp / "config.yaml", dump_yaml(cfg))
        write_json(tmp / "summary.json", summary)
        manifest["parity_ok"] = not failures
        manifest["files"] = {p.name: file_record(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / MANIFEST, manifest)
        # again before the swap replaces the old bundle whole: a file put in it while the export ran is the user's
        # (the hidden ones there at the swap are carried into the new bundle)
        check_output_dir(out_dir, "bundle", not_a_bundle_to_replace, protect=[run_dir], beside=True)
    _print_parity(manifest, task)
    spent = sum(m.get("seconds", 0.0) for m in manifest["metrics"].values())
    log(f"export: parity of {len(manifest['metrics'])} files on {len(parity_idx)} images took {spent:.1f} s")
    collapsed = [n for n, m in manifest["metrics"].items() if any(p.startswith("COLLAPSED") for p in m["problems"])]
    if collapsed:
        log(
            f"WARNING: {', '.join(collapsed)} predict (nearly) one class for every image: the model is collapsed, not "
            "merely badly exported"
        )
    if quant_report is not None:
        from edgekd.exporters.quant_report import print_quant_report

        print_quant_report(quant_report)
    log(f"export: wrote {out_dir} ({len(manifest['files'])} files)")
    if failures:
        message = "parity out of bounds: " + " / ".join(failures)
        if not allow:
            raise ParityError(message + " (bundle written; pass --allow-parity-failure to accept)")
        log(f"warning: {message} (allowed)")
    return manifest


def role_arch(cfg: Config, summary: dict[str, Any], role: str) -> tuple[str | None, str]:
    """The architecture a run's ``<role>.pt`` must hold, and where that is recorded. A teacher read
    from ``teacher.checkpoint`` is the file's architecture whatever ``teacher.arch`` says (README
    "Models"): the run's summary records which (None when it does not: any architecture)."""
    if role != "teacher":  # the baseline is the student trained without KD, student_qat the student under QAT
        return cfg.student.arch, "config.yaml's student.arch"
    if cfg.teacher.checkpoint is None:
        return cfg.teacher.arch, "config.yaml's teacher.arch"
    rec = summary.get("teacher")
    arch = rec.get("arch") if isinstance(rec, dict) else None
    return (arch if isinstance(arch, str) else None), f"summary.json's teacher (from {cfg.teacher.checkpoint})"


def check_role_checkpoint(path: Path, role: str, cfg: Config, summary: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to hold the run's ``role`` model: the role and architecture
    it records are the run's. A teacher.pt copied over student.pt exported as the student, exit 0, with the
    student's architecture, parameters and accuracy in the manifest. Nothing named in the file is
    imported (:func:`~edgekd.checkpoint.checkpoint_arch` first). The QAT student's ``student_qat.pt``
    (``role`` student_qat: the student's architecture) must also be of the QAT graph layout this
    edgekd builds, and its float student is built on the meta device here, before any file is
    written (the other roles' in :func:`~edgekd.checkpoint.build_model`)."""
    from edgekd.checkpoint import checkpoint_arch, load_checkpoint
    from edgekd.errors import CheckpointError

    if role == QAT_ROLE:
        from edgekd.train.qat import check_qat_checkpoint

        ckpt = check_qat_checkpoint(path)
    else:
        ckpt = load_checkpoint(path)
    if ckpt["format"] == "state_dict":
        raise CheckpointError(f"{path} is a bare state_dict: it does not say which architecture it belongs to")
    arch = checkpoint_arch(ckpt, path, named_archs(cfg))
    have = ckpt.get("role")
    if have is not None and have != role:  # every checkpoint edgekd writes records its stage
        raise CheckpointError(
            f"{path} holds a {have} model ({arch}), not the run's {role}: it was copied from elsewhere; "
            "export the run it belongs to"
        )
    want, where = role_arch(cfg, summary, role)
    if want is not None and arch != want:
        raise CheckpointError(
            f"{path} holds a {arch}, but the run's {role} is a {want} ({where}): it is not this run's {role}"
        )
    if role == QAT_ROLE:
        from edgekd.train.qat import check_qat_fits

        check_qat_fits(ckpt, path, named_archs(cfg))
    return ckpt


def _export_role(job: ExportJob, requested: Sequence[str]) -> list[str]:
    """Write one model's files, each format by the exporter :mod:`edgekd.formats` names (one call
    per exporter, sources first); returns the names of its model files."""
    rank = {f.name: i for i, f in enumerate(all_formats())}
    chosen = [get_format(name) for name in requested]
    chosen += [
        f for f in all_formats() if job.role in f.auto_roles and f.source in requested and f.name not in requested
    ]
    groups: dict[str, list[Format]] = {}
    for fmt in chosen:  # in the order asked for within a group (the TFLite files of one backend call)
        groups.setdefault(fmt.exporter or "", []).append(fmt)
    for members in sorted(groups.values(), key=lambda group: min(rank[f.name] for f in group)):
        members[0].exporter_function()(job, [f.name for f in members])
        job.made.update({f.name: job.path(f.name) for f in members})
    return [path.name for name, path in job.made.items() if get_format(name).is_model]


def _model_entry(path: Path, role: str, fmt: str, ckpt: dict, input_shape: tuple[int, ...], task) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "format": fmt}
    base = {"mean": ckpt["data"]["mean"], "std": ckpt["data"]["std"], "range": [0, 255]}
    if get_format(fmt).runtime == "litert":  # the file carries its tensors' shapes, dtypes and quantization
        from edgekd.runtimes import open_runner
        from edgekd.runtimes.tflite_runner import model_ops

        runner = open_runner(path)
        entry["input"] = {**runner.input_details, **base}
        entry["output"] = runner.output_details
        entry["ops"] = model_ops(path)
    else:
        entry["input"] = {
            "name": "input",
            "shape": list(input_shape),
            "layout": "NCHW",
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
            **base,
        }
        entry["output"] = {
            "shape": [input_shape[0], *task.output_shape(ckpt["data"]["num_classes"], input_shape[2:])],
            "dtype": "float32",
        }
    return entry


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"edgekd": __version__}
    for dist in (
        "torch",
        "onnx",
        "onnxruntime",
        "onnx2tf",
        "tensorflow",
        "litert-torch",
        "ai-edge-quantizer",
        "ai-edge-litert",
        "numpy",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


MCU_CHECK = "edgekd.mcu.support"  # run as a process of its own, by name (mcu sits above exporters)
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from importlib import import_module; "
    "sys.exit(import_module(sys.argv[2]).main(sys.argv[3:]))"
)


def _mcu_support(path: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """TFLite Micro's verdict on an int8 file (every op it lacks, the flash it needs) from
    :mod:`edgekd.mcu.support`, in a fresh process: a crash inside TFLite Micro fails this cell, not
    the export (the same process boundary as bench's measuring processes)."""
    import subprocess
    import sys
    import tempfile

    from edgekd.procs import run_bounded

    root = str(Path(__file__).resolve().parents[2])  # the folder holding this edgekd package
    with tempfile.TemporaryDirectory(prefix="edgekd-mcu-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        write_json(job, {"file": str(path)})
        try:
            proc = run_bounded([sys.executable, "-c", _BOOT, root, MCU_CHECK, str(job), str(result)], timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"no answer after {timeout_s:.0f} s"}
        if proc.returncode != 0 or not result.is_file():
            tail = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()][-1:] or [
                f"exit status {proc.returncode}"
            ]
            return {"status": "failed", "reason": f"the check process died: {tail[0][:200]}"}
        out = json.loads(result.read_text())
    out.pop("traceback", None)
    return out


def mcu_cell(mcu: dict[str, Any] | None) -> str:
    """The export table's MCU column: ok or the ops TFLite Micro lacks, with the flash needed."""
    if not mcu:
        return "—"  # not an int8 file: TFLite Micro runs full-integer models only
    flash = f"flash ≈{mcu['flash_bytes'] / 1024:,.0f} KB" if mcu.get("flash_bytes") else ""
    if mcu.get("status") != "ok":
        return f"not checked ({mcu.get('reason', '?')})"
    if mcu["missing_ops"]:
        return f"no: TFLM lacks {', '.join(mcu['missing_ops'])}; {flash}"
    if mcu.get("error"):
        return f"no: {mcu['error']}"
    return f"ok, {flash}"


def _print_parity(manifest: dict[str, Any], task) -> None:
    rows = []
    for name, m in manifest["metrics"].items():
        status = "ok" if m["ok"] else "OUT OF BOUNDS: " + "; ".join(m["problems"])
        rows.append(
            [
                name,
                m["format"],
                manifest["files"][name]["bytes"],
                *task.parity_cells(m),
                m["n"],
                status,
                mcu_cell(m.get("mcu")),
            ]
        )
    print_table(
        "export parity vs PyTorch",
        ["file", "format", "bytes", *task.parity_headers, "n", "status", "MCU (TFLite Micro)"],
        rows,
    )
