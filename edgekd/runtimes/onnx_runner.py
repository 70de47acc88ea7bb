"""ONNX Runtime (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError, first_line
from edgekd.runtimes.base import Runner, RuntimeMissing, raw_nchw


class OnnxRunner(Runner):
    layout = "NCHW"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeMissing("onnxruntime is not installed (pip install 'edgekd[bench]')") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for bad models
            raise EdgekdError(f"cannot load {path.name} in onnxruntime: {first_line(exc, 200)}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.runtime = f"onnxruntime {ort.__version__}"

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return raw_nchw(image)

    def invoke(self, x: Any) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    @property
    def input_details(self) -> dict[str, Any]:
        i = self.session.get_inputs()[0]
        return {"name": i.name, "shape": list(i.shape), "dtype": "float32", "layout": self.layout}
