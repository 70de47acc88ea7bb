"""Lean int8 graphs (SAME-padded strided convs, AVERAGE_POOL_2D, flatten without TRANSPOSE, folded
normalization), checkpoints from before the padding modes, the MCU estimate's per-op costs and the
parity check that a collapsed model cannot pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import SHARED_DATA
from edgekd.models import create_model
from edgekd.models.layers import SameConv2d, same_pads
from edgekd.models.wrappers import with_preprocessing

REFERENCE = SHARED_DATA / "mlperf-tiny" / "resnet8_quant.tflite"


def test_same_padding_is_tensorflows() -> None:
    assert same_pads(32, 3, 2) == (0, 1)  # even input: the extra pixel at the bottom/right only
    assert same_pads(31, 3, 2) == (1, 1)
    assert same_pads(32, 1, 2) == (0, 0)
    assert same_pads(32, 3, 1) == (1, 1)
    torch.manual_seed(0)
    conv = SameConv2d(3, 4, 3, 2, bias=False)
    x = torch.randn(1, 3, 32, 32)
    want = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.equal(conv(x), want)
    assert set(conv.state_dict()) == set(nn.Conv2d(3, 4, 3, 2, 1, bias=False).state_dict())


def test_padding_modes_share_weights_but_not_outputs() -> None:
    torch.manual_seed(0)
    same = create_model("resnet8", 10, 3, (32, 32)).eval()
    old = create_model("resnet8", 10, 3, (32, 32), padding="torch").eval()
    old.load_state_dict(same.state_dict())  # the same tensors: only the window of strided convs differs
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(same(x), old(x))
    with pytest.raises(Exception, match="padding must be one of same, torch"):
        create_model("resnet8", 10, 3, (32, 32), padding="valid")


def test_checkpoints_without_a_padding_mode_load_as_torch(tmp_path: Path) -> None:
    from edgekd.checkpoint import load_model, model_payload, save_checkpoint

    model = create_model("mobilenetv2_small", 10, 3, (32, 32), padding="torch")
    data = {"num_classes": 10, "in_channels": 3, "image_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
    payload = model_payload(model, "mobilenetv2_small", {}, data, "student")
    assert payload["kwargs"] == {"padding": "torch"}  # new checkpoints record it
    legacy = {**payload, "kwargs": {}}  # one written before the padding modes existed
    save_checkpoint(tmp_path / "old.pt", legacy)
    loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.padding_mode_name == "torch"
    save_checkpoint(
        tmp_path / "new.pt", model_payload(create_model("resnet8", 10, 3, (32, 32)), "resnet8", {}, data, "student")
    )
    assert load_model(tmp_path / "new.pt")[0].padding_mode_name == "same"


def test_resnet8_s2_has_resnet8s_macs_at_lower_resolution() -> None:
    from edgekd.models import count_macs

    base, s2 = create_model("resnet8", 10, 3, (32, 32)), create_model("resnet8_s2", 10, 3, (32, 32))
    macs = count_macs(base, (1, 3, 32, 32)), count_macs(s2, (1, 3, 32, 32))
    assert abs(macs[1] / macs[0] - 1) < 0.02, macs  # the same MACs within 2 %
    shapes = []
    s2.layer1.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    s2.layer3.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    s2(torch.zeros(1, 3, 32, 32))
    assert shapes == [(1, 32, 16, 16), (1, 128, 4, 4)]
    assert isinstance(s2.conv1, SameConv2d) and s2.conv1.stride == (2, 2)  # no PAD op in the int8 graph


def _max_diff(a: nn.Module, b: nn.Module, shape: tuple[int, ...]) -> float:
    x = torch.rand(4, *shape[1:]) * 255
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def test_lean_rewrites_are_exact() -> None:
    from edgekd.exporters.lean import NhwcFlatten, lean_for_export

    torch.manual_seed(0)
    plain = with_preprocessing(create_model("plain2", 10, 1, (8, 8), width=0.5), [0.3], [0.4])
    lean, applied = lean_for_export(plain, (1, 1, 8, 8))
    assert applied == ["nhwc_flatten"]  # mean ≠ 0 and a padded first conv: the normalization stays
    assert any(isinstance(m, NhwcFlatten) for m in lean.modules())
    assert _max_diff(lean, plain, (1, 1, 8, 8)) < 1e-4

    resnet = with_preprocessing(create_model("resnet8", 10, 3, (32, 32)), [0.0] * 3, [0.25, 0.24, 0.26])
    lean, applied = lean_for_export(resnet, (1, 3, 32, 32))
    assert applied == ["folded_normalization"]  # mean 0: zero padding means the same in both spaces
    assert not hasattr(lean, "normalize")
    assert _max_diff(lean, resnet, (1, 3, 32, 32)) < 1e-3
    _, applied = lean_for_export(
        with_preprocessing(create_model("resnet8", 10, 3, (32, 32)), [0.49, 0.48, 0.45], [0.25] * 3), (1, 3, 32, 32)
    )
    assert applied == []

    # MobileNetV3's hard-sigmoid gates as add, ReLU6, multiply (TFLite Micro has no RELU_0_TO_1)
    mnv3 = with_preprocessing(create_model("mobilenetv3_small", 10, 3, (32, 32)), [0.5] * 3, [0.25] * 3).eval()
    for m in mnv3.modules():  # trained-looking statistics, so the gates see more than their initial values
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0.0, 0.5)
    lean, applied = lean_for_export(mnv3, (1, 3, 32, 32))
    assert applied == ["hardsigmoid_ops"]
    assert not any(isinstance(m, nn.Hardsigmoid) for m in lean.modules())
    assert any(isinstance(m, nn.Hardsigmoid) for m in mnv3.modules())  # the model parity compares with: untouched
    assert _max_diff(lean, mnv3, (1, 3, 32, 32)) < 1e-4


def _collapsed_case(distort: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch logits of a model predicting class 3 for every image, int8 logits off by up to
    ``distort`` that still rank class 3 first, and balanced labels."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, (1000, 10)).astype(np.float32)
    reference[:, 3] += 8.0
    noise = rng.uniform(-distort, distort, reference.shape).astype(np.float32)
    noise[:, 3] = np.abs(noise[:, 3]) + distort  # class 3 stays on top: top-1 agreement 100 %
    return reference + noise, reference, np.arange(1000) % 10


def test_collapsed_model_with_distorted_int8_logits_fails_parity() -> None:
    from edgekd.exporters.parity import Bounds, out_of_bounds, parity_metrics

    outputs, reference, labels = _collapsed_case(distort=40.0)
    metrics = parity_metrics(outputs, reference, labels)
    assert metrics["top1_agreement"] == 1.0 and metrics["test_acc"] == metrics["reference_acc"] == 0.1
    problems = out_of_bounds("tflite_int8", metrics, Bounds())
    assert any(p.startswith("logit SNR") for p in problems), problems
    assert any(p.startswith("COLLAPSED: class 3 for 100.0%") for p in problems), problems


def test_healthy_model_passes_the_logit_bounds() -> None:
    from edgekd.exporters.parity import Bounds, out_of_bounds, parity_metrics

    rng = np.random.default_rng(1)
    labels = np.arange(1000) % 10
    reference = rng.normal(0.0, 3.0, (1000, 10)).astype(np.float32)
    reference[np.arange(1000), labels] += 10.0
    outputs = reference + rng.normal(0.0, 0.05, reference.shape).astype(np.float32)  # int8-like error
    assert out_of_bounds("tflite_int8", parity_metrics(outputs, reference, labels), Bounds()) == []
    # imbalanced labels: predicting the majority class that often is not a collapse
    skewed = np.where(np.arange(1000) < 950, 0, 1)
    logits = np.zeros((1000, 2), np.float32)
    logits[np.arange(1000), skewed] = 5.0
    assert out_of_bounds("tflite_int8", parity_metrics(logits, logits, skewed), Bounds()) == []


def test_tiny_students_int8_op_list(tiny_bundle: Path) -> None:
    """The registry's test student, as `edgekd export` writes it: no PAD, MEAN or TRANSPOSE."""
    import json

    from edgekd.tflite_file import read_tflite

    ops = [op.name for op in read_tflite(tiny_bundle / "student_int8.tflite").ops]
    # one input channel: the normalization (mean ≠ 0, padded first conv) is a 1×1 CONV_2D
    assert ops == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"]
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["roles"]["student"]["graph_rewrites"] == []
    metrics = manifest["metrics"]["student_int8.tflite"]
    assert metrics["max_abs_diff_steps"] == pytest.approx(
        metrics["max_abs_diff"] / metrics["output_scale"], rel=1e-3, abs=0.01
    )


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"needs {REFERENCE}")
def test_mcu_estimate_prices_every_op() -> None:
    from edgekd.mcu.estimate import (
        cycles_by_op,
        op_costs,
        reference_cycles,
        unpriced_ops,
    )
    from edgekd.tflite_file import read_tflite

    model = read_tflite(REFERENCE)
    rows = op_costs(model)
    assert [r.op for r in rows] == [op.name for op in model.ops]
    assert sum(r.cycles for r in rows) == pytest.approx(reference_cycles(model))
    assert set(cycles_by_op(model)) == set(model.op_names) and unpriced_ops(model) == []


# (arch, kwargs, channels, size, mean, expected op list of the int8 file) — what a registry student
# converts to with onnx2tf; mean 0 lets the normalization fold into the first convolution
REGISTRY_STUDENTS = [
    (
        "resnet8",
        {},
        3,
        32,
        0.0,
        ["CONV_2D"] * 3 + ["ADD"] + (["CONV_2D"] * 3 + ["ADD"]) * 2 + ["AVERAGE_POOL_2D", "FULLY_CONNECTED"],
    ),
    (
        "resnet8",
        {},
        3,
        32,
        0.5,
        ["DEPTHWISE_CONV_2D"]
        + ["CONV_2D"] * 3
        + ["ADD"]
        + (["CONV_2D"] * 3 + ["ADD"]) * 2
        + ["AVERAGE_POOL_2D", "FULLY_CONNECTED"],
    ),
    (
        "plain2",
        {"width": 0.5},
        1,
        8,
        0.3,
        ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"],
    ),
    (
        "resnet8_s2",
        {},
        3,
        32,
        0.0,
        ["CONV_2D"] * 3 + ["ADD"] + (["CONV_2D"] * 3 + ["ADD"]) * 2 + ["AVERAGE_POOL_2D", "FULLY_CONNECTED"],
    ),
    ("plain7", {"width": 0.5}, 3, 32, 0.5, None),
    ("mobilenetv2_small", {}, 3, 32, 0.5, None),
    ("mobilenetv3_small", {"width": 0.25}, 3, 32, 0.5, None),  # hard-sigmoid gates: no RELU_0_TO_1
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch,kwargs,channels,size,mean,expected",
    REGISTRY_STUDENTS,
    ids=lambda v: str(v) if not isinstance(v, list) else "",
)
def test_registry_student_int8_op_list(arch, kwargs, channels, size, mean, expected, tmp_path: Path) -> None:
    from edgekd.exporters.lean import lean_for_export
    from edgekd.exporters.to_tflite import TFLiteRequest, onnx2tf_backend
    from edgekd.tflite_file import read_tflite

    torch.manual_seed(0)
    shape = (1, channels, size, size)
    wrapped = with_preprocessing(
        create_model(arch, 10, channels, (size, size), **kwargs), [mean] * channels, [0.25] * channels
    )
    lean, _ = lean_for_export(wrapped, shape)
    calibration = np.random.default_rng(0).integers(0, 256, (16, size, size, channels), dtype=np.uint8)
    out = tmp_path / "int8.tflite"
    onnx2tf_backend(
        TFLiteRequest(
            model=lean, input_shape=shape, outputs={"tflite_int8": out}, calibration=calibration, work_dir=tmp_path
        )
    )
    ops = [op.name for op in read_tflite(out).ops]
    assert not {"PAD", "MEAN", "TRANSPOSE", "RELU_0_TO_1"} & set(ops), ops  # RELU_0_TO_1: not in TFLite Micro
    if expected is not None:
        assert ops == expected


def test_torch_runner_predicts_in_batches_as_one_at_a_time(tiny_bundle: Path) -> None:
    from edgekd.runtimes.base import Runner
    from edgekd.runtimes.torch_runner import TorchRunner

    runner = TorchRunner(tiny_bundle / "student.pt", threads=1)
    images = np.load(tiny_bundle / "eval.npz")["images"][:300]
    batched = runner.predict(images, batch_size=128)
    assert batched.shape == (300, 10)
    assert np.abs(batched - Runner.predict(runner, images)).max() < 1e-4


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"needs {REFERENCE}")
def test_op_slices_compute_what_the_op_computes_in_the_file(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekd.benchmark.int8_compare import op_slices
    from edgekd.tflite_file import read_tflite

    slices = op_slices(REFERENCE, tmp_path / "reference")
    assert len(slices) == len(read_tflite(REFERENCE).ops) == 16
    keys = list(slices)
    assert keys[0] == "CONV_2D 32x32x3>32x32x16 k3 s1" and keys[2] == "CONV_2D 32x32x16>32x32x16 k3 s1 #2"
    assert [op.name for op in read_tflite(slices[keys[1]]).ops] == ["CONV_2D"]
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    whole = Interpreter(str(REFERENCE), experimental_op_resolver_type=builtin, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    x = np.random.default_rng(0).integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
    whole.set_tensor(whole.get_input_details()[0]["index"], x)
    whole.invoke()
    tensors = {d["name"]: d for d in whole.get_tensor_details()}
    # the second op alone, fed the first op's output from the whole file, gives the second op's output
    alone = Interpreter(str(slices[keys[1]]), experimental_op_resolver_type=builtin)
    alone.allocate_tensors()
    inp, out = alone.get_input_details()[0], alone.get_output_details()[0]
    alone.set_tensor(inp["index"], whole.get_tensor(tensors[inp["name"]]["index"]))
    alone.invoke()
    assert out["quantization"] == tensors[out["name"]]["quantization"]
    assert np.array_equal(alone.get_tensor(out["index"]), whole.get_tensor(tensors[out["name"]]["index"]))
    with pytest.raises(ValueError, match="empty folder"):
        op_slices(REFERENCE, tmp_path / "reference")
