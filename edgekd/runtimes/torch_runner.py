"""PyTorch, from a bundle's model-only checkpoint (``student.pt``), preprocessing folded in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.runtimes.base import Runner, RuntimeMissing, raw_nchw


class TorchRunner(Runner):
    layout = "NCHW"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        try:
            import torch
        except ImportError:
            raise RuntimeMissing("torch is not installed (the PyTorch rows need it; TFLite rows do not)") from None
        from edgekd.checkpoint import load_model
        from edgekd.models.wrappers import with_preprocessing

        if threads:
            torch.set_num_threads(threads)
        model, ckpt = load_model(path)
        self.model = with_preprocessing(model, ckpt["data"]["mean"], ckpt["data"]["std"]).eval()
        self._torch = torch
        self.runtime = f"torch {torch.__version__}"

    def prepare(self, image: np.ndarray) -> Any:
        return self._torch.from_numpy(raw_nchw(image))

    def invoke(self, x: Any) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(x).numpy()
