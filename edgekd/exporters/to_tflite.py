"""The TFLite backends' one interface, and ONNX → TFLite through onnx2tf (the ``onnx2tf`` backend).

A backend is a function registered in :data:`TFLITE_BACKENDS` that takes a :class:`TFLiteRequest`
and returns the files it wrote ({format: path}). The request carries the model in both forms a
converter may start from, the wrapped PyTorch module and (exported on first use) its ONNX graph, so
that ``onnx2tf`` and ``litert_torch`` (:mod:`edgekd.exporters.to_tflite_litert`) fit the same call.

onnx2tf transposes the graph to NHWC, writes a SavedModel and runs ``TFLiteConverter`` once per
variant: fp32, fp16 weights, dynamic range (int8 weights, float activations), full integer
(int8 weights per channel, int8 activations, int8 input and output tensors, calibrated on our
training images) and 16x8 (the same with int16 activations, input and output). It must never touch the network: by
default it downloads sample images from
GitHub to validate and calibrate 3-channel models, so that download function is replaced by one
that hands over our own calibration images for the duration of the call.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import log_tail
from edgekd.exporters.errors import ExportError
from edgekd.exporters.tf_import import import_onnx2tf, onnx2tf_recursion
from edgekd.exporters.timing import conversion
from edgekd.fdcapture import captured_fds
from edgekd.registry import Registry

# format → suffix of the file onnx2tf writes for it
ONNX2TF_OUTPUTS = {
    "tflite_fp32": "_float32.tflite",
    "tflite_fp16": "_float16.tflite",
    "tflite_dynamic": "_dynamic_range_quant.tflite",
    "tflite_int8": "_full_integer_quant.tflite",
    # TensorFlow's EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, int16 input and output
    "tflite_int16x8": "_full_integer_quant_with_int16_act.tflite",
}
TFLITE_FORMATS = tuple(ONNX2TF_OUTPUTS)


def check_request(outputs: dict[str, Any], calibration: np.ndarray) -> None:
    """What every TFLite backend takes: known formats, and raw uint8 NHWC calibration images."""
    unknown = sorted(set(outputs) - set(TFLITE_FORMATS))
    if unknown:
        raise ExportError(f"unknown TFLite format(s) {', '.join(unknown)}; available: {', '.join(TFLITE_FORMATS)}")
    if calibration.dtype != np.uint8 or calibration.ndim != 4:
        raise ExportError(
            f"calibration data must be uint8 images (N, H, W, C), got {calibration.dtype} {calibration.shape}"
        )


TFLITE_BACKENDS: Registry = Registry(
    "TFLite backend", providers=["edgekd.exporters.to_tflite", "edgekd.exporters.to_tflite_litert"]
)


@dataclass
class TFLiteRequest:
    """Everything a TFLite backend may convert from, for one model."""

    model: Any  # torch nn.Module in eval mode: raw 0–255 pixels in (normalization folded in), NCHW, logits out
    input_shape: tuple[int, int, int, int]  # (1, C, H, W): TFLite models are batch 1
    outputs: dict[str, Path]  # {TFLite format: destination}
    calibration: np.ndarray  # (N, H, W, C) uint8 raw training images for the int8 ranges
    name: str = "model"  # for messages: "student", "teacher"
    work_dir: Path | None = None  # where an ONNX graph is written when a backend asks for one
    opset: int = 17
    onnx_path: Path | None = None  # a static batch-1 ONNX of ``model`` already written, if any
    calibration_method: str = "minmax"  # int8 activation ranges (edgekd.exporters.calibration); onnx2tf: minmax only

    def onnx(self) -> Path:
        """The static batch-1 ONNX graph of ``model``, exported on first call (only the backends
        that start from ONNX pay for it)."""
        if self.onnx_path is None:
            from edgekd.exporters.to_onnx import torch_to_onnx

            if self.work_dir is None:
                raise ValueError("TFLiteRequest.onnx(): give onnx_path or work_dir")  # a caller's bug
            self.onnx_path = torch_to_onnx(
                self.model,
                Path(self.work_dir) / f"{self.name}_static.onnx",
                self.input_shape,
                self.opset,
                False,
                name=self.name,
            )
        return self.onnx_path


def _error_lines(log_text: str) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if "ERROR" in ln or "Error" in ln or "error:" in ln or "not supported" in ln]
    return " | ".join((interesting or lines)[-3:])[:500]


@contextlib.contextmanager
def offline_onnx2tf(sample_images_nhwc01: np.ndarray) -> Iterator[None]:
    """Replace onnx2tf's sample-image download with our own images (NHWC, float 0–1)."""
    import_onnx2tf()
    import onnx2tf.onnx2tf as entry
    import onnx2tf.utils.common_functions as common

    def our_images() -> np.ndarray:
        return sample_images_nhwc01.astype(np.float32)

    saved = entry.download_test_image_data, common.download_test_image_data
    entry.download_test_image_data = common.download_test_image_data = our_images
    try:
        yield
    finally:
        entry.download_test_image_data, common.download_test_image_data = saved


@TFLITE_BACKENDS.register("onnx2tf")
def onnx2tf_backend(request: TFLiteRequest) -> dict[str, Path]:
    """PyTorch → ONNX (:meth:`TFLiteRequest.onnx`) → TFLite with onnx2tf + TensorFlow."""
    if request.calibration_method != "minmax":  # TensorFlow's calibrator takes the extremes, nothing else
        raise ExportError(
            f"export.calibration_method={request.calibration_method} needs export.backend=litert_torch (onnx2tf "
            "calibrates min-max)"
        )
    return onnx_to_tflite(request.onnx(), request.outputs, request.calibration, name=request.name)


@conversion()
def onnx_to_tflite(
    onnx_path: str | Path, outputs: dict[str, Path], calibration: np.ndarray, name: str = "model"
) -> dict[str, Path]:
    """Convert ``onnx_path`` to the requested TFLite ``outputs`` ({format: path}).

    ``calibration`` holds raw training images, uint8 NHWC: the model takes raw pixels (its
    normalization is in the graph), so they are given to the calibrator as they are.
    """
    check_request(outputs, calibration)
    import onnx

    model = onnx.load(str(onnx_path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    want = (dims[2], dims[3], dims[1])  # NCHW → HWC
    if tuple(calibration.shape[1:]) != want:
        raise ExportError(f"calibration images are {calibration.shape[1:]} (HWC) but {name} takes {want}")
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgekd-onnx2tf-") as work:
        work_dir = Path(work)
        calib_path = work_dir / "calibration.npy"
        np.save(calib_path, calibration.astype(np.float32))
        with captured_fds() as log_path:
            onnx2tf = import_onnx2tf()  # inside the capture: importing TensorFlow logs to fd 2

            try:
                with offline_onnx2tf(calibration[:20].astype(np.float32) / 255.0), onnx2tf_recursion():
                    onnx2tf.convert(
                        input_onnx_file_path=str(onnx_path),
                        output_folder_path=str(work_dir / "out"),
                        output_integer_quantized_tflite=bool(
                            {"tflite_int8", "tflite_int16x8", "tflite_dynamic"} & set(outputs)
                        ),
                        quant_type="per-channel",
                        # raw pixels in, so no mean/std is applied to the calibration images
                        custom_input_op_name_np_data_path=[[input_name, str(calib_path), 0.0, 1.0]],
                        input_quant_dtype="int8",
                        output_quant_dtype="int8",
                        verbosity="error",
                    )
                failure = None
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - onnx2tf exits on some errors instead of raising
                failure = exc
            log_text = log_path.read_text(errors="replace")
        if failure is not None:
            detail = _error_lines(log_text) or str(failure)
            raise ExportError(f"cannot convert {name} to TFLite with onnx2tf: {detail}")
        stem = Path(onnx_path).stem
        written = {}
        for fmt, dest in outputs.items():
            produced = work_dir / "out" / f"{stem}{ONNX2TF_OUTPUTS[fmt]}"
            if not produced.is_file():
                tail = log_tail(log_text, 3, 400)
                raise ExportError(f"onnx2tf did not write {fmt} for {name} ({tail or 'no output'})")
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(produced), dest)
            written[fmt] = Path(dest)
    return written
