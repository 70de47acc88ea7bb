"""PyTorch → TFLite with litert-torch, without TensorFlow or ONNX (the ``litert_torch`` backend).

litert-torch lowers the ``torch.export`` graph of the wrapped model straight to a float TFLite
flatbuffer; ai-edge-quantizer then derives the other formats from that fp32 file:

* ``tflite_int8``: recipe ``static_wi8_ai8``: int8 weights per channel, int8 activations
  calibrated on our training images, and the graph's input and output tensors quantized in place
  (int8 I/O, no QUANTIZE/DEQUANTIZE at the edges). This is checked on the written file, because a
  file with float I/O or float tensors is exactly the mislabelled "int8" TFLite Micro rejects.
* ``tflite_fp16``: fp16 weights (``float_casting`` on the weighted ops), float compute.
* ``tflite_dynamic``: int8 weights per channel, float activations quantized on the fly at run
  time (``dynamic_wi8_afp32``), float I/O: a CPU format, not an MCU one.
* ``tflite_int16x8``: recipe ``static_wi8_ai16``: int8 weights per channel, int16 activations
  (ranges from the calibration images, chosen for 65,536 levels), int16 I/O.

litert-torch and ai-edge-quantizer are imported inside the functions: they pull in jax and
transformers, so they live in the ``litert`` extra and are not installed with ``edgekd[all]``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import first_line, log_tail
from edgekd.exporters.calibration import calibrated_ranges
from edgekd.exporters.errors import ExportError
from edgekd.exporters.timing import conversion
from edgekd.exporters.to_tflite import TFLITE_BACKENDS, TFLiteRequest, check_request
from edgekd.fdcapture import captured_fds
from edgekd.runtimes.tflite_runner import full_integer_problems

INSTALL_HINT = "pip install 'edgekd[litert]' (litert-torch + ai-edge-quantizer; part of edgekd[all])"


class BackendMissing(ExportError):
    """A TFLite backend whose packages are not installed in this environment."""


def convert_to_file(
    litert_torch: Any, module: Any, sample: tuple[Any, ...], dest: Path, what: str, **kwargs: Any
) -> None:
    """``litert_torch.convert(module, sample, **kwargs)`` written to ``dest``, with litert-torch's
    progress lines and the converter's C++ logging captured; a failure is one ExportError naming
    ``what`` ("NAME to TFLite") with the log's last lines."""
    with captured_fds() as log_path:
        try:
            edge_model = litert_torch.convert(module, sample, **kwargs)
            dest.parent.mkdir(parents=True, exist_ok=True)
            edge_model.export(str(dest))
            failure = None
        except Exception as exc:  # noqa: BLE001 - torch.export and the MLIR lowering raise many types
            failure = exc
        log_text = log_path.read_text(errors="replace")
    if failure is not None:
        tail = log_tail(log_text, 2, 300)
        raise ExportError(
            f"cannot convert {what} with litert-torch: {first_line(failure)}" + (f" ({tail})" if tail else "")
        )


def import_litert() -> tuple[Any, Any, Any]:
    """(litert_torch, ai_edge_quantizer.quantizer, ai_edge_quantizer.recipe), or one clear error."""
    try:
        import litert_torch
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "litert-torch"
        raise BackendMissing(
            f"export.backend=litert_torch needs litert-torch and ai-edge-quantizer ({missing} is not installed): "
            f"{INSTALL_HINT}"
        ) from None
    return litert_torch, quantizer, recipe


@TFLITE_BACKENDS.register("litert_torch")
def litert_torch_backend(request: TFLiteRequest) -> dict[str, Path]:
    """PyTorch → TFLite with litert-torch + ai-edge-quantizer; no ONNX graph is needed."""
    return torch_to_tflite(
        request.model,
        request.input_shape,
        request.outputs,
        request.calibration,
        name=request.name,
        calibration_method=request.calibration_method,
    )


def _recipes(recipe: Any) -> dict[str, Any]:
    """format → ai-edge-quantizer recipe for the formats derived from the fp32 file."""
    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    fp16 = recipe_manager.RecipeManager()
    # fp16 weights stored, cast back to float for compute: the TFLite "float16 quantization"
    fp16.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    return {
        "tflite_int8": recipe.static_wi8_ai8(),
        "tflite_fp16": fp16.get_quantization_recipe(),
        "tflite_dynamic": recipe.dynamic_wi8_afp32(),
        "tflite_int16x8": recipe.static_wi8_ai16(),
    }


@conversion()
def torch_to_tflite(
    model: Any,
    input_shape: tuple[int, ...],
    outputs: dict[str, Path],
    calibration: np.ndarray,
    name: str = "model",
    calibration_method: str = "minmax",
) -> dict[str, Path]:
    """Convert ``model`` (raw-pixel input, NCHW, batch 1 of ``input_shape``) to the requested
    TFLite ``outputs`` ({format: path}), each with an NHWC input like the onnx2tf files.

    ``calibration`` holds raw training images, uint8 NHWC, fed to the int8 calibrator as they are
    (the model's normalization is in its graph).
    """
    check_request(outputs, calibration)
    _, c, h, w = input_shape
    if tuple(calibration.shape[1:]) != (h, w, c):
        raise ExportError(f"calibration images are {calibration.shape[1:]} (HWC) but {name} takes {(h, w, c)}")
    with captured_fds():  # importing it starts absl/oneDNN logging on fd 2
        litert_torch, quantizer, recipe = import_litert()
    import torch

    # NHWC in, like the onnx2tf files: the wrapper transposes to the model's NCHW, and litert-torch's
    # layout pass folds that transpose into the convolutions
    nhwc = litert_torch.to_channel_last_io(model.eval(), args=[0]).eval()
    with tempfile.TemporaryDirectory(prefix="edgekd-litert-") as work:
        fp32 = Path(work) / "fp32.tflite"
        convert_to_file(
            litert_torch, nhwc, (torch.zeros((1, h, w, c), dtype=torch.float32),), fp32, f"{name} to TFLite"
        )
        recipes = _recipes(recipe)
        written = {}
        for fmt, dest in outputs.items():
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "tflite_fp32":
                dest.write_bytes(fp32.read_bytes())
            else:
                dest.write_bytes(
                    _quantize(
                        quantizer,
                        fp32,
                        recipes[fmt],
                        calibration if fmt in ("tflite_int8", "tflite_int16x8") else None,
                        name,
                        fmt,
                        calibration_method,
                    )
                )
            if fmt == "tflite_int8":
                problems = full_integer_problems(dest)
                if problems:
                    raise ExportError(
                        f"litert-torch wrote {name}'s int8 model but it is not full integer: {'; '.join(problems)}"
                    )
            written[fmt] = dest
    return written


def _quantize(
    quantizer: Any,
    fp32: Path,
    quant_recipe: Any,
    calibration: np.ndarray | None,
    name: str,
    fmt: str,
    method: str = "minmax",
) -> bytes:
    """One ai-edge-quantizer pass over the fp32 file; ``calibration`` for the static (int8) recipe."""
    q = quantizer.Quantizer(str(fp32), quant_recipe)
    with captured_fds() as log_path, warnings.catch_warnings():  # its size report and progress bars
        # the calibrator keeps every intermediate tensor on purpose, which LiteRT warns is for debugging
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        try:
            levels = 65536 if fmt == "tflite_int16x8" else 256  # int16 or int8 activations
            ranges = calibrated_ranges(fp32, quant_recipe, calibration, method, levels) if q.need_calibration else None
            result = q.quantize(ranges)
            failure = None
        except Exception as exc:  # noqa: BLE001 - the quantizer raises ValueError/RuntimeError/KeyError on unsupported graphs
            failure = exc
        log_text = log_path.read_text(errors="replace")
    if failure is not None:
        tail = log_tail(log_text, 2, 200)
        raise ExportError(
            f"ai-edge-quantizer cannot make {fmt} for {name}: {first_line(failure)}" + (f" ({tail})" if tail else "")
        )
    return bytes(result.quantized_model)
