"""QAT student → full-integer TFLite with the scales and zero points it learned (litert-torch).

The QAT graph (:mod:`edgekd.train.qat`) is converted to a quantize/dequantize (QDQ) graph by
``convert_pt2e`` and handed to litert-torch with the same ``PT2EQuantizer`` that annotated it
(``QuantConfig(pt2e_quantizer=…)``): the converter folds every QDQ pair into int8 tensors whose
scale and zero point are the QDQ's, so nothing is calibrated again. The file has int8 input
(scale 1, zero point −128: raw pixels − 128) and int8 output, and runs on TFLite Micro.

Routes measured and not taken: onnx2tf computes QuantizeLinear/DequantizeLinear of a QDQ ONNX
graph in float and would recalibrate the int8 file; ai-edge-quantizer on a float file would need
every learned range mapped onto tensor names by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import first_line, log_tail
from edgekd.exporters.errors import ExportError
from edgekd.exporters.timing import conversion
from edgekd.fdcapture import captured_fds


@conversion()
def qat_to_tflite(model: Any, input_shape: tuple[int, ...], dest: Path, name: str = "student_qat") -> Path:
    """Write ``model`` (a :class:`~edgekd.train.qat.QATStudent`) as a full-integer TFLite file at
    ``dest``, NHWC raw-pixel input like the other TFLite files; returns ``dest``."""
    import torch

    from edgekd.exporters.to_tflite_litert import import_litert
    from edgekd.runtimes.tflite_runner import full_integer_problems
    from edgekd.train.pt2e import tflite_quantizer

    with captured_fds():  # importing it starts absl/oneDNN logging on fd 2
        litert_torch, _quantizer, _recipe = import_litert()
    from litert_torch.quantize import quant_config

    _, c, h, w = input_shape
    qdq = model.converted()
    nhwc = litert_torch.to_channel_last_io(qdq, args=[0])
    dest = Path(dest)
    with captured_fds() as log_path:
        try:
            edge = litert_torch.convert(
                nhwc,
                (torch.zeros((1, h, w, c)),),
                quant_config=quant_config.QuantConfig(pt2e_quantizer=tflite_quantizer()),
            )
            dest.parent.mkdir(parents=True, exist_ok=True)
            edge.export(str(dest))
            failure = None
        except Exception as exc:  # noqa: BLE001 - torch.export and the MLIR lowering raise many types
            failure = exc
        log_text = log_path.read_text(errors="replace")
    if failure is not None:
        tail = log_tail(log_text, 2, 300)
        raise ExportError(
            f"cannot convert {name} to int8 TFLite with litert-torch: {first_line(failure)}"
            + (f" ({tail})" if tail else "")
        )
    problems = full_integer_problems(dest)
    if problems:
        raise ExportError(f"litert-torch wrote {name}'s int8 model but it is not full integer: {'; '.join(problems)}")
    return dest


def export_qat(ckpt_path: Path, dest: Path, arch: Any = None) -> tuple[Any, dict[str, Any]]:
    """Write the run's ``student_qat.pt`` as ``dest``; returns (its QDQ PyTorch graph, the checkpoint).
    The QDQ graph is the parity reference of the file: the fake-quant model itself. ``arch``: the
    ``module:factory`` names the run's config vouches for."""
    from edgekd.train.qat import load_qat_student

    model, ckpt = load_qat_student(ckpt_path, arch)
    c, (h, w) = ckpt["data"]["in_channels"], ckpt["data"]["image_size"]
    qat_to_tflite(model, (1, c, h, w), dest, name="student_qat")
    return model.converted(), ckpt
