"""The exporters :mod:`edgekd.formats` names: each writes one role's files of the formats it is
asked for, from an :class:`edgekd.formats.ExportJob`, by calling the conversion of that format
(:func:`torch_to_onnx`, the TFLite backend, :func:`tflite_to_c_array`)."""

from __future__ import annotations

from edgekd.formats import ExportJob


def pytorch_file(job: ExportJob, formats: list[str]) -> None:
    """The model alone: no optimizer or history travels to the device."""
    from edgekd.checkpoint import save_checkpoint

    slim = {k: v for k, v in job.checkpoint.items() if k not in ("format", "edgekd_version", "train_state")}
    save_checkpoint(job.path("pytorch"), slim)


def onnx_file(job: ExportJob, formats: list[str]) -> None:
    from edgekd.exporters.to_onnx import torch_to_onnx

    cfg = job.config
    torch_to_onnx(job.model, job.path("onnx"), job.input_shape, cfg.opset, cfg.dynamic_batch, name=job.role)


def tflite_files(job: ExportJob, formats: list[str]) -> None:
    """Every TFLite format of the role in one call of the backend ``export.backend`` names."""
    from edgekd.exporters.to_tflite import TFLITE_BACKENDS, TFLiteRequest

    cfg = job.config
    request = TFLiteRequest(
        model=job.model,
        input_shape=job.input_shape,
        outputs={f: job.path(f) for f in formats},
        calibration=job.calibration,
        name=job.role,
        work_dir=job.work,
        opset=cfg.opset,
        # the bundle's ONNX is reused when it is batch 1; a backend that needs ONNX exports
        # a static one into work/ otherwise, and one that starts from PyTorch skips ONNX
        onnx_path=None if cfg.dynamic_batch else job.made.get("onnx"),
        calibration_method=cfg.calibration_method,
    )
    TFLITE_BACKENDS.get(cfg.backend)(request)


def c_array_file(job: ExportJob, formats: list[str]) -> None:
    """``<role>_int8_model_data.cc`` and its header from the role's int8 TFLite file."""
    from edgekd.exporters.to_c_array import tflite_to_c_array

    tflite_to_c_array(job.made["tflite_int8"], job.path("c_array"))
