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

from edgekd.exporters.errors import ExportError
from edgekd.exporters.timing import conversion
from edgekd.fdcapture import captured_fds


def integer_problems(path: Path) -> list[str]:
    """:func:`~edgekd.runtimes.tflite_runner.full_integer_problems`, except that with no float
    tensor anywhere a QUANTIZE op is an int8 → int8 requantization (an op the quantizer left to
    share its input's scale, e.g. a mean over H×W): integer, and TFLite Micro runs it."""
    from edgekd.runtimes.tflite_runner import full_integer_problems

    problems = full_integer_problems(path)
    if not any("float tensor" in p for p in problems):
        problems = [p for p in problems if p != "has QUANTIZE ops"]
    return problems


@conversion()
def qat_to_tflite(model: Any, input_shape: tuple[int, ...], dest: Path, name: str = "student_qat") -> Path:
    """Write ``model`` (a :class:`~edgekd.train.qat.QATStudent`) as a full-integer TFLite file at
    ``dest``, NHWC raw-pixel input like the other TFLite files; returns ``dest``."""
    import torch

    from edgekd.exporters.to_tflite_litert import convert_to_file, import_litert
    from edgekd.train.pt2e import tflite_quantizer

    with captured_fds():  # importing it starts absl/oneDNN logging on fd 2
        litert_torch, _quantizer, _recipe = import_litert()
    from litert_torch.quantize import quant_config

    _, c, h, w = input_shape
    qdq = model.converted()
    nhwc = litert_torch.to_channel_last_io(qdq, args=[0])
    dest = Path(dest)
    convert_to_file(
        litert_torch,
        nhwc,
        (torch.zeros((1, h, w, c)),),
        dest,
        f"{name} to int8 TFLite",
        quant_config=quant_config.QuantConfig(pt2e_quantizer=tflite_quantizer()),
    )
    problems = integer_problems(dest)
    if problems:
        raise ExportError(f"litert-torch wrote {name}'s int8 model but it is not full integer: {'; '.join(problems)}")
    return dest


def export_qat(ckpt: dict[str, Any], ckpt_path: Path, dest: Path, arch: Any = None) -> Any:
    """Write the run's ``student_qat.pt`` (``ckpt``, the checkpoint read from ``ckpt_path`` and
    checked) as ``dest``; returns its QDQ PyTorch graph, the parity reference of the file: the
    fake-quant model itself, with the int8 kernels' own rounding where TFLite's differs from a float
    op (hard-swish). ``arch``: the ``module:factory`` names the run's config vouches for."""
    from edgekd.train.qat import qat_student_from

    model = qat_student_from(ckpt, ckpt_path, arch)
    c, (h, w) = ckpt["data"]["in_channels"], ckpt["data"]["image_size"]
    qat_to_tflite(model, (1, c, h, w), dest, name="student_qat")
    return model.reference()
