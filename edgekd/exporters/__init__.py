"""The export stage: PyTorch → ONNX → TFLite (fp32, full-integer int8, …), each checked for parity,
written with ``eval.npz`` and a checksummed ``manifest.json`` into one artifact bundle.

One small function per conversion, named source→target (:func:`torch_to_onnx`,
:func:`onnx_to_tflite`, :func:`tflite_to_c_array`), each logging one uniform line. TFLite comes
from the backend named by ``export.backend`` (``TFLITE_BACKENDS``: ``onnx2tf`` through
``onnx_to_tflite``, or ``litert_torch`` through ``to_tflite_litert.torch_to_tflite``), each taking a
``TFLiteRequest``.
"""
