"""PyTorch, from a bundle's model-only checkpoint (``student.pt``), preprocessing folded in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.runtimes.base import Runner, RuntimeMissing, raw_nchw


class TorchRunner(Runner):
    layout = "NCHW"
    takes_arch = True

    def __init__(self, path: Path, threads: int | None, arch: Any = None) -> None:
        super().__init__(path, threads)
        try:
            import torch
        except ImportError:
            raise RuntimeMissing("torch is not installed (the PyTorch rows need it; TFLite rows do not)") from None
        from edgekd.checkpoint import load_model
        from edgekd.models.wrappers import with_preprocessing

        if threads:
            torch.set_num_threads(threads)
        model, ckpt = load_model(path, arch=arch)
        self.model = with_preprocessing(model, ckpt["data"]["mean"], ckpt["data"]["std"]).eval()
        self._torch = torch
        self.runtime = f"torch {torch.__version__}"

    def prepare(self, image: np.ndarray) -> Any:
        return self._torch.from_numpy(raw_nchw(image))

    def invoke(self, x: Any) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(x).numpy()

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Float outputs for uint8 NHWC images, in batches: one image at a time, eager PyTorch spent
        minutes on export parity for a 10,000-image test split (its per-call overhead, not the MACs)."""
        out = []
        with self._torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2)).astype(np.float32)
                out.append(self.model(self._torch.from_numpy(x)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0,), np.float32)
