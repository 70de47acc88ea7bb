"""PT2E quantization tooling, imported on demand: torchao's ``prepare_qat_pt2e``/``convert_pt2e``
and litert-torch's TFLite ``PT2EQuantizer`` (the ``litert`` extra), with one compatibility patch.
Kept apart from :mod:`edgekd.train.qat` so that the config check can ask for it without importing
the trainer."""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from edgekd.errors import EdgekdError

INSTALL_HINT = "pip install 'edgekd[litert]' (torchao + litert-torch, whose PT2E quantizer matches TFLite int8)"


def _patch_pattern_export() -> None:
    """torchao 0.18 hands plain functions (its conv-BN patterns) to ``torch.export.export``, which
    torch 2.14 refuses ("Expected `mod` to be an instance of `torch.nn.Module`"); wrap them in a
    module. Applied to every module that imported the helper by name. Idempotent."""
    import torchao.quantization.pt2e.qat_utils  # noqa: F401 - imports the helper by name: patch it there too
    import torchao.quantization.pt2e.utils as utils

    original = utils._get_aten_graph_module_for_pattern
    if getattr(original, "edgekd_patched", False):
        return

    class _Pattern(nn.Module):
        def __init__(self, fn: Any) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.fn(*args, **kwargs)

    def patched(pattern: Any, example_inputs: Any, is_cuda: bool = False, **kwargs: Any) -> Any:
        if not isinstance(pattern, nn.Module):
            pattern = _Pattern(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    patched.edgekd_patched = True  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if (
            name.startswith(("torchao.", "litert_torch."))
            and getattr(module, "_get_aten_graph_module_for_pattern", None) is original
        ):
            module._get_aten_graph_module_for_pattern = patched


def import_pt2e() -> dict[str, Any]:
    """The PT2E functions and litert-torch's quantizer, or one clear error naming the extra."""
    from edgekd.fdcapture import captured_fds

    try:
        with captured_fds():  # litert-torch imports TensorFlow's converter, which logs to fd 2 on import
            from litert_torch.quantize import pt2e_quantizer
            from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "torchao"
        raise EdgekdError(
            f"distill.qat needs torchao and litert-torch ({missing} is not installed): {INSTALL_HINT}"
        ) from None
    _patch_pattern_export()
    return {
        "pt2e_quantizer": pt2e_quantizer,
        "prepare_qat_pt2e": prepare_qat_pt2e,
        "convert_pt2e": convert_pt2e,
        "to_eval": move_exported_model_to_eval,
        "to_train": move_exported_model_to_train,
    }


def tflite_quantizer(pt2e: dict[str, Any] | None = None) -> Any:
    """The TFLite int8 quantizer: per-channel weights, QAT fake quantizers (training and export use the same)."""
    pt2e = pt2e or import_pt2e()
    q = pt2e["pt2e_quantizer"]
    return q.PT2EQuantizer().set_global(q.get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
