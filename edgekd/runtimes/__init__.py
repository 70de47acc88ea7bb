"""Model runners: one interface over PyTorch, ONNX Runtime, the TFLite interpreter and TFLite Micro.

Every runner takes raw uint8 images in NHWC (the layout of the bundle's ``eval.npz``), prepares
them the way its model file expects (layout, dtype, int8 quantization from the tensor details),
invokes the model one sample at a time (batch 1, as deployed) and returns float logits
(dequantized for int8). Only numpy is imported here; each runtime loads inside its runner, so a
Raspberry Pi with numpy + ai-edge-litert can use the TFLite runner.
"""

from __future__ import annotations

from edgekd.runtimes.base import Runner, RuntimeMissing, open_runner

__all__ = ["Runner", "RuntimeMissing", "open_runner"]
