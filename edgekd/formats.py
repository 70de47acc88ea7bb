"""The model formats of a bundle, in one registry that export, verify, the runners, bench and the
reports all read: a format's file name, the exporter that makes it from which source format, the
runner that opens it, whether it reproduces PyTorch exactly and whether its I/O is integer.

Adding a format is one :func:`register_format` call (and its test): the exporter and the runner are
named as ``"module:attribute"`` and imported only when a file of that format is written or opened,
so this module stays standard-library only (a Raspberry Pi reads it with numpy + ai-edge-litert).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.registry import Registry


@dataclass(frozen=True)
class Format:
    """One kind of file a bundle can hold."""

    name: str  # what export.formats, --formats and every report call it: "tflite_int8"
    suffix: str  # appended to the role: "student" + "_int8.tflite"
    runtime: str  # what runs it: "torch", "onnxruntime", "litert", … ("" for a file no runner opens)
    exact: bool = (
        False  # reproduces PyTorch up to float rounding (parity bound on |Δlogit|), else top-1/accuracy bounds
    )
    quantized: bool = False  # int8 weights and/or activations
    integer_io: bool = False  # int8 input and output tensors (what TFLite Micro takes)
    # the dtype of the model file's input and output tensors ("float32", "int8", "int16"): bench fails
    # a bundle row whose file has others (a float file under an int8 name); None: not checked
    io_dtype: str | None = None
    runner: str | None = None  # "module:Class" of the :class:`edgekd.runtimes.Runner` that opens it; None: not a model
    exporter: str | None = None  # "module:function(job, formats)" that writes it (see :class:`ExportJob`)
    source: str | None = None  # the format it is made from (None: from the PyTorch model itself)
    # roles for which the file is written whenever its source is, without being asked for in
    # export.formats (the student's int8 model as a C array for TFLite Micro projects)
    auto_roles: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_model(self) -> bool:
        """A model file a runner opens: parity-checked at export, listed in manifest["models"], benched."""
        return self.runner is not None

    def file_name(self, role: str) -> str:
        return role + self.suffix

    def runner_class(self) -> type:
        if self.runner is None:
            raise EdgekdError(f"format {self.name!r} is not a model file (no runner opens it)")
        return load_attr(self.runner)

    def exporter_function(self) -> Any:
        if self.exporter is None:
            raise EdgekdError(f"format {self.name!r} has no exporter")
        return load_attr(self.exporter)


FORMATS: Registry[Format] = Registry("format")


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` to :data:`FORMATS` (a second registration under the same name replaces the first, with a warning)."""
    return FORMATS.register(fmt.name)(fmt)


def load_attr(spec: str) -> Any:
    """``"package.module:Attr"`` → the attribute, importing the module. Specs come from code
    registrations only, never from a bundle or a config (which name formats, not code)."""
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def get_format(name: str) -> Format:
    """The format called ``name``; an unknown name is an error with a did-you-mean."""
    return FORMATS.get(name)


def find_format(name: str | None) -> Format | None:
    """The format called ``name``, or None (a bundle from another edgekd may name one unknown here)."""
    return FORMATS.get(name) if name is not None and name in FORMATS else None


def all_formats() -> list[Format]:
    """Every format in registration order: sources before what is made from them, and the order
    reports and bench plans list them in."""
    return [fmt for _, fmt in FORMATS.items()]


def check_export_formats(named: dict[str, Any]) -> None:
    """Every format named under each config key (``{"export.formats": [...], ...}``) exists, can be
    exported, and has its source format listed beside it: `edgekd distill` checks this before
    training, `edgekd export` before converting."""
    from edgekd.errors import ConfigError
    from edgekd.registry import unknown_name_message

    exportable = [f.name for f in all_formats() if f.exporter is not None]
    for key, names in named.items():
        for name in names:
            if name not in exportable:
                raise ConfigError(f"config: {key}: {unknown_name_message('export format', name, exportable)}")
            source = get_format(name).source
            if source is not None and source not in names:
                raise ConfigError(f"config: {key}: {name} is made from {source}; add {source} to {key}")


def model_formats() -> list[Format]:
    return [f for f in all_formats() if f.is_model]


def format_rank(name: str) -> int:
    """Position of ``name`` in registration order (unknown names last)."""
    names = [f.name for f in all_formats()]
    return names.index(name) if name in names else len(names)


def file_name(role: str, fmt: str) -> str:
    """The bundle file of ``role`` in format ``fmt``: ``student_int8.tflite``."""
    return get_format(fmt).file_name(role)


def format_of_file(name: str) -> Format | None:
    """The registered model format whose file names end like ``name`` (longest suffix wins), or
    None. Bundles record each file's format in the manifest; this is for a lone model file."""
    matches = [f for f in model_formats() if Path(name).name.endswith(f.suffix)]
    return max(matches, key=lambda f: len(f.suffix)) if matches else None


def _extension(suffix: str) -> str:
    """ ".tflite" of "_int8.tflite", ".pt" of ".pt" (where ``Path(".pt").suffix`` is "": a hidden
    file's name, no extension)."""
    return "." + suffix.rsplit(".", 1)[-1] if "." in suffix else ""


def formats_with_extension(extension: str) -> list[Format]:
    """Registered model formats whose files end in ``extension`` (".tflite"), in registration order.
    No extension matches none (an extensionless file is no model file)."""
    return [f for f in model_formats() if extension and _extension(f.suffix) == extension]


def model_extensions() -> list[str]:
    """The file extensions of the registered model formats: [".onnx", ".pt", ".tflite"]."""
    return sorted({_extension(f.suffix) for f in model_formats()} - {""})


def format_for_file(name: str) -> Format | None:
    """For a lone model file (no manifest): the format whose suffix ``name`` ends with, else the
    first registered one with its extension (``resnet8_quant.tflite`` opens as TFLite), else None."""
    return format_of_file(name) or next(iter(formats_with_extension(Path(name).suffix)), None)


@dataclass
class ExportJob:
    """What an exporter gets for one model (role) of a bundle. It writes ``path(fmt)`` for each
    format it is asked for; ``made`` holds the files already written for this role, by format."""

    role: str  # student | teacher | baseline
    model: Any  # torch nn.Module, eval mode: raw 0–255 pixels in (normalization folded in), NCHW, logits out
    checkpoint: dict[str, Any]  # the role's checkpoint (arch, kwargs, data, state_dict, …)
    input_shape: tuple[int, ...]  # (1, C, H, W)
    config: Any  # the export.* settings (edgekd.config.ExportConfig)
    calibration: Any  # (N, H, W, C) uint8 raw training images for int8 ranges
    folder: Path  # the bundle being written
    work: Path  # scratch space, removed before the bundle is sealed
    made: dict[str, Path] = field(default_factory=dict)

    def path(self, fmt: str) -> Path:
        return self.folder / file_name(self.role, fmt)


def _builtin(**kwargs: Any) -> None:
    register_format(Format(**kwargs))


_TFLITE_RUNNER = "edgekd.runtimes.tflite_runner:TFLiteRunner"
_TFLITE_EXPORTER = "edgekd.exporters.steps:tflite_files"

_builtin(
    name="pytorch",
    suffix=".pt",
    runtime="torch",
    exact=True,
    runner="edgekd.runtimes.torch_runner:TorchRunner",
    exporter="edgekd.exporters.steps:pytorch_file",
    description="the model-only checkpoint (weights_only loadable), preprocessing folded in when run",
)
_builtin(
    name="onnx",
    suffix=".onnx",
    runtime="onnxruntime",
    exact=True,
    runner="edgekd.runtimes.onnx_runner:OnnxRunner",
    exporter="edgekd.exporters.steps:onnx_file",
    description="ONNX graph, NCHW float input",
)
_builtin(
    name="tflite_fp32",
    suffix="_fp32.tflite",
    runtime="litert",
    exact=True,
    io_dtype="float32",
    runner=_TFLITE_RUNNER,
    exporter=_TFLITE_EXPORTER,
    description="TFLite, float32",
)
_builtin(
    name="tflite_fp16",
    suffix="_fp16.tflite",
    runtime="litert",
    quantized=True,
    io_dtype="float32",
    runner=_TFLITE_RUNNER,
    exporter=_TFLITE_EXPORTER,
    description="TFLite, float16 weights",
)
_builtin(
    name="tflite_dynamic",
    suffix="_dynamic.tflite",
    runtime="litert",
    quantized=True,
    io_dtype="float32",
    runner=_TFLITE_RUNNER,
    exporter=_TFLITE_EXPORTER,
    description="TFLite, dynamic range (int8 weights, float activations)",
)
_builtin(
    name="tflite_int8",
    suffix="_int8.tflite",
    runtime="litert",
    quantized=True,
    integer_io=True,
    io_dtype="int8",
    runner=_TFLITE_RUNNER,
    exporter=_TFLITE_EXPORTER,
    description="TFLite, full integer: int8 weights, activations, input and output",
)
_builtin(
    name="tflite_int16x8",
    suffix="_int16x8.tflite",
    runtime="litert",
    quantized=True,
    io_dtype="int16",
    runner=_TFLITE_RUNNER,
    exporter=_TFLITE_EXPORTER,
    description="TFLite, 16x8: int8 weights, int16 activations, input and output (LiteRT's builtin kernels; "
    "XNNPACK does not accelerate it, TFLite Micro has it for some ops only)",
)
_builtin(
    name="c_array",
    suffix="_int8_model_data.cc",
    runtime="",
    quantized=True,
    integer_io=True,
    exporter="edgekd.exporters.steps:c_array_file",
    source="tflite_int8",
    auto_roles=("student",),
    description="the int8 model as a C array (.cc + .h) for TensorFlow Lite Micro projects",
)
