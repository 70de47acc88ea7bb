"""Read a ``.tflite`` file without any runtime: its ops (name, version), tensors (shape, type) and
the multiply-accumulates of each op, computed from the tensor shapes.

Standard library only. A TFLite model is a FlatBuffer (schema ``tensorflow/lite/schema/schema.fbs``);
only the handful of tables a benchmark needs are decoded here, so the MCU estimate and the Raspberry Pi
checks work where neither TensorFlow nor the ``flatbuffers`` package is installed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from edgekd.errors import EdgekdError

# BuiltinOperator in schema.fbs, by code. The enum only grows at its end (codes are part of the file
# format), so a name list indexed by code stays valid for older files; a newer code reads BUILTIN_<n>.
_OPS = (
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE "
    "EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D "
    "LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 "
    "RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS "
    "SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER "
    "BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE "
    "UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT "
    "LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS "
    "NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE "
    "TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT "
    "REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN "
    "FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR "
    "LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND "
    "COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH "
    "IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY "
    "SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO "
    "RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT "
    "HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE "
    "BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU "
    "DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX "
    "UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT "
    "STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM "
    "STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM "
    "STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS "
    "STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG "
    "STABLEHLO_MINIMUM STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER "
    "STABLEHLO_RSQRT STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER "
    "STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE "
    "STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT "
    "STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR "
    "REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE"
).split()

# TensorType in schema.fbs → (name, bytes per element)
_TYPES = {
    0: ("float32", 4),
    1: ("float16", 2),
    2: ("int32", 4),
    3: ("uint8", 1),
    4: ("int64", 8),
    5: ("string", 1),
    6: ("bool", 1),
    7: ("int16", 2),
    8: ("complex64", 8),
    9: ("int8", 1),
    10: ("float64", 8),
    11: ("complex128", 16),
    12: ("uint64", 8),
    13: ("resource", 1),
    14: ("variant", 1),
    15: ("uint32", 4),
    16: ("uint16", 2),
    17: ("int4", 1),
}

# ops whose cost is multiply-accumulates over a weight tensor; the rest cost per output element
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")


class TfliteFileError(EdgekdError):
    """A file that is not a readable TFLite flatbuffer."""


def op_name(code: int) -> str:
    return _OPS[code] if 0 <= code < len(_OPS) else f"BUILTIN_{code}"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer_bytes: int  # constant data stored in the file (weights, biases); 0 for activations

    @property
    def elements(self) -> int:
        n = 1
        for v in self.shape:
            n *= max(v, 1)  # -1 (dynamic batch) counts as 1
        return n


@dataclass(frozen=True)
class Op:
    name: str  # builtin name, e.g. CONV_2D (CUSTOM ops: "CUSTOM:<code>")
    version: int
    inputs: tuple[int, ...]  # tensor indices (-1: optional input left out)
    outputs: tuple[int, ...]
    opcode_index: int


@dataclass
class TfliteModel:
    path: Path
    size_bytes: int
    ops: list[Op]
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    opcodes: list[tuple[str, int]]  # (name, version) per operator code
    version_offsets: list[int | None] = field(
        repr=False, default_factory=list
    )  # file offset of each opcode's version field
    # file offsets of each opcode's (deprecated_builtin_code, builtin_code) fields (None: not stored)
    code_offsets: list[tuple[int | None, int | None]] = field(repr=False, default_factory=list)

    @cached_property
    def op_names(self) -> list[str]:
        """Distinct op names in graph order."""
        return list(dict.fromkeys(op.name for op in self.ops))

    @property
    def input_dtype(self) -> str:
        return self.tensors[self.inputs[0]].dtype

    @property
    def is_int8(self) -> bool:
        """Full-integer: int8 input and every weight tensor of a MAC op int8 (what a Cortex-M runs)."""
        if self.input_dtype != "int8":
            return False
        for op in self.ops:
            if op.name in MAC_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
                if self.tensors[op.inputs[1]].dtype not in ("int8", "int4"):
                    return False
        return True

    def macs(self, op: Op) -> int:
        """Multiply-accumulates of one op, from its tensor shapes (0 for ops without weights)."""
        t = self.tensors
        if op.name not in MAC_OPS or len(op.inputs) < 2 or min(op.inputs[:2]) < 0 or not op.outputs:
            return 0
        out, weights = t[op.outputs[0]], t[op.inputs[1]]
        if op.name == "CONV_2D":  # weights (Cout, KH, KW, Cin); output (N, OH, OW, Cout)
            return out.elements * (weights.elements // max(weights.shape[0], 1))
        if op.name == "DEPTHWISE_CONV_2D":  # weights (1, KH, KW, Cout): KH·KW per output element
            return out.elements * weights.shape[1] * weights.shape[2] if len(weights.shape) == 4 else 0
        if op.name == "FULLY_CONNECTED":  # weights (units, in): `in` MACs per output element
            return out.elements * weights.shape[-1]
        if op.name == "TRANSPOSE_CONV":  # inputs: output_shape, weights (Cout, KH, KW, Cin), input
            data = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            return data.elements * (weights.elements // max(weights.shape[-1], 1)) if data else 0
        # BATCH_MATMUL: (…, M, K) × (…, K, N): K MACs per output element
        a = t[op.inputs[0]]
        return out.elements * a.shape[-1] if a.shape else 0

    def output_elements(self, op: Op) -> int:
        return sum(self.tensors[i].elements for i in op.outputs if i >= 0)

    @cached_property
    def total_macs(self) -> int:
        return sum(self.macs(op) for op in self.ops)

    @cached_property
    def weight_bytes(self) -> int:
        return sum(t.buffer_bytes for t in self.tensors)


class _Reader:
    """FlatBuffer tables: a table starts with an int32 offset back to its vtable (field offsets)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table`` (None: not stored, default)."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vsize = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * index
        if slot >= vsize:
            return None
        rel = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + rel if rel else None

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self.field(table, index)
        return default if pos is None else struct.unpack_from("<" + fmt, self.data, pos)[0]

    def ref(self, table: int, index: int) -> int | None:
        pos = self.field(table, index)
        return None if pos is None else pos + self.u32(pos)

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(position of the first element, length); length 0 when absent."""
        pos = self.ref(table, index)
        return (0, 0) if pos is None else (pos + 4, self.u32(pos))

    def tables(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(n)]

    def ints(self, table: int, index: int) -> tuple[int, ...]:
        start, n = self.vector(table, index)
        return struct.unpack_from(f"<{n}i", self.data, start) if n else ()

    def string(self, table: int, index: int) -> str:
        pos = self.ref(table, index)
        if pos is None:
            return ""
        n = self.u32(pos)
        return self.data[pos + 4 : pos + 4 + n].decode("utf-8", "replace")


def read_tflite(path: str | Path) -> TfliteModel:
    """Decode the first subgraph of a ``.tflite`` file (the one that is invoked)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TfliteFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TfliteFileError(f"{path.name} is not a TFLite model (no TFL3 identifier)")
    try:
        return _decode(path, data)
    except (struct.error, IndexError) as exc:
        raise TfliteFileError(f"{path.name} is a truncated or corrupt TFLite model ({exc})") from None


def _decode(path: Path, data: bytes) -> TfliteModel:
    r = _Reader(data)
    model = r.u32(0)
    # Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers
    opcodes, version_offsets, code_offsets = [], [], []
    for oc in r.tables(model, 1):
        # OperatorCode: 0 deprecated_builtin_code (int8), 1 custom_code, 2 version (=1), 3 builtin_code (int32)
        code = max(r.scalar(oc, 0, "b", 0), r.scalar(oc, 3, "i", 0))
        name = op_name(code)
        if name == "CUSTOM":
            name = f"CUSTOM:{r.string(oc, 1)}"
        opcodes.append((name, r.scalar(oc, 2, "i", 1)))
        version_offsets.append(r.field(oc, 2))
        code_offsets.append((r.field(oc, 0), r.field(oc, 3)))
    buffer_sizes = []
    for buf in r.tables(model, 4):
        # Buffer: 0 data [ubyte], 1 offset, 2 size (data outside the flatbuffer, models > 2 GB)
        _, n = r.vector(buf, 0)
        buffer_sizes.append(n or r.scalar(buf, 2, "Q", 0))
    subgraphs = r.tables(model, 2)
    if not subgraphs:
        raise TfliteFileError(f"{path.name} has no subgraph")
    sg = subgraphs[0]
    tensors = []
    for t in r.tables(sg, 0):
        # Tensor: 0 shape, 1 type, 2 buffer, 3 name
        buffer = r.scalar(t, 2, "I", 0)
        dtype = _TYPES.get(r.scalar(t, 1, "b", 0), ("unknown", 1))[0]
        tensors.append(
            Tensor(
                r.string(t, 3), tuple(r.ints(t, 0)), dtype, buffer_sizes[buffer] if buffer < len(buffer_sizes) else 0
            )
        )
    ops = []
    for o in r.tables(sg, 3):
        # Operator: 0 opcode_index, 1 inputs, 2 outputs
        index = r.scalar(o, 0, "I", 0)
        name, version = opcodes[index]
        ops.append(Op(name, version, tuple(r.ints(o, 1)), tuple(r.ints(o, 2)), index))
    return TfliteModel(
        path, len(data), ops, tensors, list(r.ints(sg, 1)), list(r.ints(sg, 2)), opcodes, version_offsets, code_offsets
    )


def with_op_version(data: bytes, model: TfliteModel, op: str, version: int) -> bytes:
    """The file's bytes with every opcode named ``op`` set to ``version``: how a model written by a
    newer converter looks to an older runtime (used to test that error). The version field must be
    stored in the file (converters store it whenever it is not the default 1)."""
    out = bytearray(data)
    found = False
    for (name, _), pos in zip(model.opcodes, model.version_offsets):
        if name == op:
            if pos is None:
                raise TfliteFileError(
                    f"{model.path.name}: the version of {op} is not stored in the file (default 1); cannot patch it in "
                    "place"
                )
            struct.pack_into("<i", out, pos, version)
            found = True
    if not found:
        raise TfliteFileError(f"{model.path.name} has no {op} op; it has {', '.join(model.op_names)}")
    return bytes(out)


def with_op_replaced(data: bytes, model: TfliteModel, op: str, new_op: str) -> bytes:
    """The file's bytes with every opcode named ``op`` turned into ``new_op``: how the TFLite Micro
    support check gets past one missing kernel to find the next (and how tests make a model with an
    op TFLM lacks). The model is not meant to run correctly afterwards, only to be resolved.
    Codes from 127 on live in ``builtin_code`` alone (the old int8 field then holds 127)."""
    code = _OPS.index(new_op)
    out = bytearray(data)
    found = False
    for (name, _), (old_pos, new_pos) in zip(model.opcodes, model.code_offsets):
        if name != op:
            continue
        if (old_pos is None and new_pos is None) or (code >= 127 and new_pos is None):
            raise TfliteFileError(
                f"{model.path.name}: the code of {op} is not stored where {new_op} needs it; cannot patch it in place"
            )
        if old_pos is not None:
            struct.pack_into("<b", out, old_pos, min(code, 127))
        if new_pos is not None:
            struct.pack_into("<i", out, new_pos, code)
        found = True
    if not found:
        raise TfliteFileError(f"{model.path.name} has no {op} op; it has {', '.join(model.op_names)}")
    return bytes(out)
