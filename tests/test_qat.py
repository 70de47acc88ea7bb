"""Quantization-aware distillation (distill.qat) and the int8 quantization report.

The QAT tests need the ``litert`` extra (torchao + litert-torch); they skip without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_overrides
from edgekd.config import load_config
from edgekd.errors import ConfigError


def test_qat_section_is_typed_and_checked() -> None:
    cfg = load_config(None, ["distill.qat.epochs=3", "distill.qat.lr=0.001"])
    assert cfg.distill.qat.epochs == 3 and cfg.distill.qat.lr == 0.001
    with pytest.raises(ConfigError, match="did you mean 'distill.qat.epochs'"):
        load_config(None, ["distill.qat.epoch=3"])
    for bad in (
        "distill.qat.epochs=-1",
        "distill.qat.lr=0",
        "distill.qat.observer_epochs=0",
        "distill.qat.bn_epochs=-1",
    ):
        with pytest.raises(ConfigError, match="distill.qat"):
            load_config(None, [bad])


def test_qat_only_after_the_standard_and_transfer_flows() -> None:
    from edgekd.train.methods import check_method_config

    cfg = load_config(None, ["distill.method=takd", "distill.takd.assistants=[test_student]", "distill.qat.epochs=1"])
    with pytest.raises(ConfigError, match="distill.qat runs after the standard and transfer flows"):
        check_method_config(cfg)


def test_quant_report_for_every_int8_file(tiny_bundle: Path) -> None:
    report = json.loads(
        (tiny_bundle / "quant_report.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")
    )
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    int8 = sorted(n for n in manifest["files"] if n.endswith("_int8.tflite"))
    assert int8 and sorted(report["files"]) == int8 and "quant_report.json" in manifest["files"]
    r = report["files"]["student_int8.tflite"]
    assert r["reference"] == "student_fp32.tflite" and r["matched_layers"] == len(r["layers"])
    for layer in r["layers"]:
        assert layer["snr_db"] is None or 5 < layer["snr_db"] < 80, layer  # int8 of a trained model: tens of dB
        assert 0 <= layer["clipped"] <= 0.01  # calibrated on these very images: next to nothing is clipped
        assert (
            layer["float_min"] >= layer["int8_min"] - layer["scale"]
            and layer["float_max"] <= layer["int8_max"] + layer["scale"]
        )
    convs = [x for x in r["layers"] if x["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(
        x["weight_scales"] > 1 for x in convs[1:]
    )  # per-channel weights (the first conv is the normalization)


def _graph(ops: list[tuple[str, list[int], int]], shapes: dict[int, list[int]]):
    """A quant-report model of a TFLite graph given as (op, input tensors, output tensor), tensor 0 the input."""
    from edgekd.exporters.quant_report import _Model

    model = object.__new__(_Model)  # the graph alone: no interpreter
    tensors = [{"index": t, "shape": np.array(s), "name": f"t{t}"} for t, s in shapes.items()]
    every = [
        {"index": k, "op_name": op, "inputs": np.array(i), "outputs": np.array([o])} for k, (op, i, o) in enumerate(ops)
    ]
    model.graph(tensors, every, {0})
    return model


def test_quant_report_pairs_layers_through_the_graph() -> None:
    """A residual block whose 1×1 shortcut the float file schedules first and the int8 file last
    (as onnx2tf does with ResNet-8): pairing by position compared the int8 3×3 convolution with the
    float shortcut, and the report showed negative SNRs for healthy layers."""
    from edgekd.exporters.quant_report import _pairs

    act = [1, 8, 8, 8]
    shapes = {0: [1, 8, 8, 4], 10: [8, 1, 1, 4], 11: [8, 3, 3, 4], 12: [8, 3, 3, 8], 1: act, 2: act, 3: act, 4: act}
    ref = _graph(
        [
            ("CONV_2D", [0, 10], 1),  # shortcut
            ("CONV_2D", [0, 11], 2),  # conv1
            ("CONV_2D", [2, 12], 3),  # conv2
            ("ADD", [3, 1], 4),
            ("DELEGATE", [0, 10, 11, 12], 4),  # repeats the ops it replaced: not a producer
        ],
        shapes,
    )
    int8 = _graph(
        [
            ("QUANTIZE", [0], 20),
            ("CONV_2D", [20, 11], 2),  # conv1
            ("DEPTHWISE_CONV_2D", [2, 12], 3),  # conv2, written as the other convolution kind
            ("TRANSPOSE", [20], 21),
            ("TRANSPOSE", [21], 22),
            ("CONV_2D", [22, 10], 1),  # shortcut, behind layout ops the float file does not have
            ("ADD", [1, 3], 4),
        ],
        {**shapes, 20: [1, 8, 8, 4], 21: [1, 4, 8, 8], 22: [1, 8, 8, 4]},
    )
    assert _pairs(int8, ref) == [(0, 1), (1, 2), (2, None), (3, None), (4, 0), (5, 3)]
    # a float file without the shortcut: the int8 shortcut stays unpaired instead of taking a conv's
    # place; the ADD still pairs (its unpaired input constrains nothing, its paired one matches)
    ref = _graph([("CONV_2D", [0, 11], 2), ("CONV_2D", [2, 12], 3), ("ADD", [3, 2], 4)], shapes)
    assert _pairs(int8, ref) == [(0, 0), (1, 1), (2, None), (3, None), (4, None), (5, 2)]


def test_quant_report_leaves_an_affine_twin_unpaired() -> None:
    """onnx2tf folds a hard-sigmoid's x/6 + 1/2 (or, for edgekd's add/ReLU6/multiply form, the +3)
    into the convolution before it; the QAT file keeps that convolution plain. Compared, healthy
    layers showed −4 to 0 dB and the advice "int16 activations" or "wider range"; such a pair is now
    recognised as another affine function of one signal and left unpaired. Ordinary int8 error
    (rounding noise, clipping, an offset of a few steps) stays comparable."""
    from edgekd.exporters.quant_report import _affine_twin, _fit_sums

    rng = np.random.default_rng(0)
    q = rng.normal(0.0, 0.4, 20_000)
    span = 255 * 0.02  # the int8 range of a tensor with scale 0.02 (±2.55): q is well inside it

    def twin(f: np.ndarray, unsaturated: np.ndarray | None = None, qq: np.ndarray = q) -> tuple | None:
        mask = np.ones(qq.size, dtype=bool) if unsaturated is None else unsaturated
        return _affine_twin(*_fit_sums(f, qq, mask), span=span)

    assert twin(q / 6 + 0.5) == pytest.approx((1 / 6, 0.5), abs=1e-6)  # the folded hard-sigmoid
    assert twin(3 * q) == pytest.approx((3, 0), abs=1e-6)
    assert twin(q + 3.0) == pytest.approx((1, 3), abs=1e-6)  # the folded +3: far outside the int8 range
    assert twin(q + rng.normal(0, 0.05, q.size)) is None  # rounding noise
    assert twin(q + 0.1) is None  # an offset of 5 steps (a zero point off) is int8 error
    assert twin(q / 6 + rng.normal(0, 1.0, q.size)) is None  # uncorrelated: a bad layer, kept
    assert twin(np.zeros_like(q)) is None and _affine_twin(0, 0, 0, 0, 0, 0) is None
    # heavy clipping (int8 range ±0.8 on a float of std 1, 42 % clipped): fitted where the int8
    # value is not saturated it stays comparable; fitted over everything it would read as a float
    # op 1.5× this one (and the clipping would go unreported)
    f = rng.normal(0.0, 1.0, q.size)
    clipped = np.clip(np.round(f / 0.01) * 0.01, -0.8, 0.8)
    assert twin(f, np.abs(clipped) < 0.795, clipped) is None
    assert twin(f, None, clipped)[0] == pytest.approx(1.49, abs=0.05)
    # an affine twin whose int8 range also cuts it: still recognised from the unsaturated values
    cut = np.clip(q, -0.3, 0.3)
    assert twin(q / 6 + 0.5, np.abs(cut) < 0.295, cut)[0] == pytest.approx(1 / 6)


def test_advice_names_the_likely_fix() -> None:
    from edgekd.exporters.quant_report import _advice

    base = {"weight_scales": 8, "clipped": 0.0, "float_min": 0.0, "float_max": 10.0, "p999_abs": 9.0, "snr_db": 15.0}
    assert _advice({**base, "weight_scales": 1}) == "per-channel weights"
    assert "calibration" in _advice({**base, "clipped": 0.05})
    assert "percentile or MSE" in _advice({**base, "p999_abs": 0.5})
    assert "16x8" in _advice({**base, "snr_db": 8.0})
    assert _advice(base).startswith("QAT")


# --------------------------------------------------------------------------------------------
# QAT for real (litert extra)


@pytest.fixture(scope="module")
def pt2e():
    pytest.importorskip("torchao", reason="torchao not installed: pip install 'edgekd[litert]'")
    pytest.importorskip("litert_torch", reason="litert-torch not installed: pip install 'edgekd[litert]'")
    from edgekd.train.qat import import_pt2e

    return import_pt2e()


def test_qat_student_exports_with_its_learned_scales(pt2e, tmp_path: Path) -> None:
    """A tiny model: QAT steps with a KD loss → int8 TFLite that agrees with its fake-quant graph
    on ≥ 99.9 % of images, full integer, accepted by TFLite Micro, input exact on pixels."""
    import torch

    from conftest import assert_tflm_matches_litert
    from edgekd.exporters.parity import reference_logits
    from edgekd.exporters.to_tflite_qat import integer_problems, qat_to_tflite
    from edgekd.models import create_model
    from edgekd.runtimes import open_runner
    from edgekd.train.methods import HintonKD
    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    student = create_model("test_student", 10, 3, (12, 12), width=8)
    teacher = create_model("test_teacher", 10, 3, (12, 12)).eval()
    model = QATStudent(student, [0.5] * 3, [0.25] * 3, (12, 12))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (600, 12, 12, 3), dtype=np.uint8)  # NHWC raw pixels
    x = (torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)) / 255 - 0.5) / 0.25
    kd = HintonKD(temperature=4.0, alpha=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(15):
        batch = x[step * 32 : (step + 1) * 32]
        with torch.no_grad():
            t_out = teacher(batch)
        loss = kd(model(batch), t_out, t_out.argmax(1))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    before = [fq.scale.clone() for fq in model.graph.modules() if hasattr(fq, "observer_enabled")]
    model(x[:64])  # evaluating never moves the learned ranges
    assert all(
        torch.equal(a, fq.scale)
        for a, fq in zip(before, (m for m in model.graph.modules() if hasattr(m, "observer_enabled")))
    )

    path = qat_to_tflite(model, (1, 3, 12, 12), tmp_path / "qat_int8.tflite")
    assert integer_problems(path) == []  # int8 I/O, no float tensor (int8 → int8 requantizes allowed)
    runner = open_runner(path)
    assert runner.input_details["scale"] == 1.0 and runner.input_details["zero_point"] == -128
    eval_images = images[480:]
    reference = reference_logits(model.reference(), eval_images)
    out = runner.predict(eval_images)
    agreement = float(np.mean(out.argmax(1) == reference.argmax(1)))
    assert agreement >= 0.999, agreement
    # the reference's int32 biases and integer convolutions are the file's: bit-exact (was up to
    # 3 steps with float biases, 1 with float convolutions)
    np.testing.assert_array_equal(out, reference)
    assert_tflm_matches_litert(path, eval_images[:20])


def _observed_test_student():
    """(a test student's QAT graph after one observed batch, in eval mode; its state dict then)."""
    import torch

    from edgekd.models import create_model
    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    model = QATStudent(create_model("test_student", 10, 3, (12, 12), width=8), [0.5] * 3, [0.25] * 3, (12, 12))
    model.train()
    model(torch.randn(32, 3, 12, 12))
    model.eval()
    return model, {k: v.clone() for k, v in model.graph.state_dict().items()}


def test_a_qat_checkpoint_is_built_on_meta_first(pt2e, tmp_path: Path) -> None:
    """student_qat.pt's arch and kwargs are data, as student.pt's are: the float student they
    describe is built on the meta device and takes the file's float tensors before the QAT graph is
    built for real. A QAT checkpoint as the stage writes it loads; a width edited to 1e6 is one line
    (the real build asked for 72 TB: a RuntimeError traceback)."""
    import torch

    from edgekd.checkpoint import model_payload, save_checkpoint
    from edgekd.errors import CheckpointError
    from edgekd.train.qat import QAT_GRAPH_VERSION, load_qat_student

    model, _ = _observed_test_student()
    data = {"num_classes": 10, "in_channels": 3, "image_size": [12, 12], "mean": [0.5] * 3, "std": [0.25] * 3}
    payload = model_payload(model, "test_student", {"width": 8}, data, "student_qat", qat={"graph": QAT_GRAPH_VERSION})
    save_checkpoint(tmp_path / "student_qat.pt", payload)
    loaded, ckpt = load_qat_student(tmp_path / "student_qat.pt")
    x = torch.randn(4, 3, 12, 12)
    assert ckpt["role"] == "student_qat" and torch.equal(loaded(x), model(x))
    save_checkpoint(tmp_path / "wide.pt", {**payload, "kwargs": {"width": 10**6}})
    with pytest.raises(CheckpointError, match=r"wide.pt does not match the model: size mismatch for features.0.weight"):
        load_qat_student(tmp_path / "wide.pt")


def test_converted_graph_biases_lie_on_the_int32_grid(pt2e) -> None:
    """Every conv/linear bias of the QDQ reference is a whole number of input scale × weight scale
    steps, the int32 value the file stores; the training graph's float biases are left alone."""
    import torch

    from edgekd.train.pt2e import graph_constant

    model, trained = _observed_test_student()
    graph = model.converted()
    checked = 0
    for n in graph.graph.nodes:
        if str(n.target) not in ("aten.conv2d.default", "aten.linear.default") or len(n.args) < 3:
            continue
        x, w, b = n.args[:3]
        step = float(x.args[1]) * graph_constant(graph, str(w.args[1].target)).double()
        bias = graph_constant(graph, str(b.target)).double()
        q = bias / step
        assert torch.allclose(q, q.round(), atol=1e-3), (b.target, (q - q.round()).abs().max())
        checked += 1
    assert checked >= 3  # the pixel normalization, the convs, the classifier
    assert all(torch.equal(v, model.graph.state_dict()[k]) for k, v in trained.items())


def test_converted_graph_weights_lie_on_the_int8_grid(pt2e) -> None:
    """Every per-channel quantized weight of the QDQ reference is a whole number of its channel's
    scale (the converter quantizes the float weight again, with its own rounding: on the grid it
    cannot pick another integer); the training graph's weights are left alone."""
    import torch

    from edgekd.train.pt2e import graph_constant

    model, trained = _observed_test_student()
    graph = model.converted()
    checked = 0
    for n in graph.graph.nodes:
        if str(n.target) != "quantized_decomposed.quantize_per_channel.default":
            continue
        weight, scale = (graph_constant(graph, str(a.target)).double() for a in n.args[:2])
        scale = scale.view(-1, *[1] * (weight.dim() - 1))
        steps = weight / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4), (n.args[0].target, (steps - steps.round()).abs().max())
        checked += 1
    assert checked >= 3
    assert all(torch.equal(v, model.graph.state_dict()[k]) for k, v in trained.items())


def test_integer_hardswish_rounds_as_the_fixed_point_kernel() -> None:
    """TFLite's int8 hard-swish is a 16-bit fixed-point form: within one step of exact rounding
    everywhere, and not equal to it (so the reference graph must use it, not the float op). The
    module maps each dequantized input to the dequantized table value."""
    import torch

    from edgekd.train.int8_kernels import IntegerHardSwish, hardswish_table

    differ = 0
    for s_in in np.linspace(0.02, 0.2, 19):  # MobileNetV3-like ranges
        for zp_in in (-20, 0, 13):
            s_out, zp_out = float(s_in) / 2, -120
            table = hardswish_table(float(s_in), zp_in, s_out, zp_out)
            x = (np.arange(-128, 128) - zp_in) * float(s_in)
            exact = np.clip(np.round(x * np.clip(x + 3, 0, 6) / 6 / s_out) + zp_out, -128, 127)
            assert np.abs(table - exact).max() <= 1
            differ += int((table != exact).sum())
    assert differ > 0  # measured: 27 of 14,592 values
    s_in, zp_in, s_out, zp_out = 0.0520, -7, 0.0299, -116
    table = hardswish_table(s_in, zp_in, s_out, zp_out)
    x = (np.arange(-128, 128) - zp_in) * s_in
    assert table[0] == zp_out  # x ≤ −3: hard-swish is 0, the zero point
    module = IntegerHardSwish(s_in, zp_in, s_out, zp_out)
    out = module(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(out.numpy(), (table - zp_out) * s_out, rtol=0, atol=1e-6)


def _conv_net():
    """Each kind of integer arithmetic a CNN student has: conv + ReLU, strided conv, depthwise
    conv, residual add, global mean, fully connected."""
    from torch import nn

    class ConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 48, 3, padding=1)
            self.b = nn.Conv2d(48, 96, 3, stride=2, padding=1)
            self.c = nn.Conv2d(96, 96, 3, padding=1, groups=96)
            self.fc = nn.Linear(96, 64)

        def forward(self, x):
            x = self.b(self.a(x).relu())
            x = self.c(x) + x
            return self.fc(x.mean((2, 3)))

    return ConvNet()


def _calibrated(model, image_size: int, n: int = 600):
    """(QAT student of ``model`` with observed ranges, in eval mode; raw NHWC images, the first 200 used)."""
    import torch

    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    student = QATStudent(model, [0.5] * 3, [0.25] * 3, (image_size, image_size))
    images = np.random.default_rng(0).integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    x = (torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)) / 255 - 0.5) / 0.25
    student.train()
    with torch.no_grad():
        for i in range(0, 200, 50):
            student(x[i : i + 50])
    return student.eval(), images


def test_integer_add_rounds_as_xnnpack() -> None:
    """XNNPACK's int8 add turns each input's scale ratio into a 20–21-bit multiplier and rounds
    half up: a sum 10⁻⁶ under a half step falls below it. Values read from a MobileNetV3-small QAT
    file under LiteRT's default CPU path, where the float graph gave ±40."""
    import torch

    from edgekd.train.int8_kernels import IntegerAdd

    s_a, s_b, s_out = 0.07657483965158463, 0.0626128762960434, 0.11079919338226318
    add = IntegerAdd(s_a, s_b, s_out)
    a = torch.tensor([13.0, -13.0, 0.0, 100.0]) * s_a
    b = torch.tensor([54.0, -54.0, 0.0, -20.0]) * s_b
    exact = (a.double() / s_a * s_a + b.double() / s_b * s_b) / s_out
    assert abs(float(exact[0]) - 39.5) < 1e-5  # 39.50000087: rounds to 40 in the float graph
    out = torch.round(add(a, b) / s_out)
    assert out.tolist() == [39.0, -39.0, 0.0, float(torch.round(exact[3]))]


def test_reference_accumulates_convolutions_in_integers(pt2e) -> None:
    """The parity reference replaces every conv and linear of the QDQ graph by its integer form
    (exact int32 sums, the runtime's float32 requantization): one module per op, and never more
    than the last bit of rounding away from the float graph."""
    import torch

    from edgekd.exporters.parity import reference_logits
    from edgekd.train.int8_kernels import IntegerAdd, IntegerConv

    torch.set_num_threads(1)
    model, images = _calibrated(_conv_net(), 16)
    qdq, reference = model.converted(), model.reference()
    ops = [n for n in qdq.graph.nodes if str(n.target) in ("aten.conv2d.default", "aten.linear.default")]
    assert len(ops) == 5  # the pixel normalization's 1×1 conv, three convs, the classifier
    assert sum(isinstance(m, IntegerConv) for m in reference.modules()) == len(ops)
    assert sum(isinstance(m, IntegerAdd) for m in reference.modules()) == 1
    assert not [n for n in reference.graph.nodes if str(n.target) in ("aten.conv2d.default", "aten.linear.default")]
    a, b = reference_logits(qdq, images[200:]), reference_logits(reference, images[200:])
    step = float([n for n in reference.graph.nodes if "quantize_per_tensor" in str(n.target)][-1].args[1])
    assert np.abs(a - b).max() <= step + 1e-6


def test_reference_looks_through_inference_dropout(pt2e) -> None:
    """MobileNetV3's classifier is linear → hard-swish → dropout → linear. The file has no op for
    the dropout (the identity in eval), so its HARD_SWISH quantizes straight into the dropout's
    scale: the reference drops the dropout and runs the integer hard-swish there too (it kept the
    float one, a step off on 1–2 of 1,024 values of a trained MobileNetV3-small)."""
    from torch import nn

    from edgekd.train.int8_kernels import IntegerHardSwish

    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 32),
        nn.Hardswish(),
        nn.Dropout(0.2, inplace=True),
        nn.Linear(32, 10),
    )
    model, _ = _calibrated(net, 4)
    reference = model.reference()
    assert not [n for n in reference.graph.nodes if "dropout" in str(n.target)]
    assert sum(isinstance(m, IntegerHardSwish) for m in reference.modules()) == 1


@pytest.mark.slow  # one litert-torch conversion
def test_integer_convolutions_are_the_files(pt2e, tmp_path: Path) -> None:
    """LiteRT's default CPU path (XNNPACK) sums int8 products exactly and requantizes in float32:
    the reference's integer convolutions (and add) give its output bit for bit, conv + ReLU,
    strided, depthwise, residual add, mean and fully connected, where the QDQ graph's float32 sums
    were a step off on 0.027 % of the values (measured here; 0.066 % without the add)."""
    import torch

    from edgekd.exporters.parity import reference_logits
    from edgekd.exporters.to_tflite_qat import qat_to_tflite
    from edgekd.runtimes import open_runner

    torch.set_num_threads(1)
    model, images = _calibrated(_conv_net(), 16)
    path = qat_to_tflite(model, (1, 3, 16, 16), tmp_path / "convs_int8.tflite")
    runner = open_runner(path, threads=1)
    out = runner.predict(images[200:])
    np.testing.assert_array_equal(out, reference_logits(model.reference(), images[200:]))


def _mnv3_like(num_classes: int = 10):
    """MobileNetV3-small's int8 troubles in a few layers: hard-swish, a squeeze-excitation with
    hard-sigmoid (torchvision's own ``SqueezeExcitation``), and two residual ``+=`` in a row."""
    import torch
    from torch import nn
    from torchvision.ops.misc import SqueezeExcitation

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                nn.BatchNorm2d(c),
                nn.Hardswish(),
                SqueezeExcitation(c, 8, scale_activation=nn.Hardsigmoid),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            result = self.body(x)
            result += x  # in place, as torchvision's InvertedResidual
            return result

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.Hardswish(),
        Block(16),
        Block(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def test_hard_sigmoid_rewrite_is_exact() -> None:
    import torch
    from torch import nn

    from edgekd.models.layers import HardSigmoidInt8
    from edgekd.train.qat import int8_friendly

    x = torch.linspace(-5, 5, 1001)
    assert torch.allclose(HardSigmoidInt8()(x), nn.functional.hardsigmoid(x), atol=1e-7)
    model = int8_friendly(_mnv3_like())
    assert not any(isinstance(m, nn.Hardsigmoid) for m in model.modules())
    assert sum(isinstance(m, HardSigmoidInt8) for m in model.modules()) == 2


def assert_no_float_edge(graph) -> None:
    """Every compute op of a QDQ graph reads dequantized int8 and writes quantized int8 (a conv
    followed by its ReLU, or an add by its ReLU or ReLU6, counts as one op: TFLite fuses them), so the
    converter has nothing left to run in float or to quantize with a scale of its own choosing."""
    import torch

    ops = [n for n in graph.nodes if n.op == "call_function" and "quantize" not in str(n.target)]
    fused = ("aten.conv2d.default", "aten.add.Tensor", "aten.add_.Tensor")
    relus = ("aten.relu.default", "aten.relu_.default", "aten.relu6.default")
    for n in ops:
        users = [str(u.target) for u in n.users]
        if str(n.target) in fused and len(users) == 1 and users[0] in relus:
            continue  # quantized after the ReLU
        reads = [a for a in n.args if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
        if str(n.target) in relus and reads and str(reads[0].target) in fused:
            reads = []
        assert all("dequantize_per" in str(a.target) for a in reads), (n.name, [a.name for a in reads])
        assert all("quantize_per_tensor" in str(u.target) for u in n.users), (n.name, [u.name for u in n.users])


def test_mobilenet_v3_like_qat_graph_has_no_float_edge(pt2e) -> None:
    """Before any conversion: litert-torch's quantizer alone left the hard-sigmoid and a residual
    add of the MobileNetV3-like model float."""
    import torch

    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    model = QATStudent(_mnv3_like(), [0.5] * 3, [0.25] * 3, (16, 16))
    model(torch.randn(8, 3, 16, 16))
    graph = model.eval().converted().graph
    targets = {str(n.target) for n in graph.nodes}
    assert "aten.relu6.default" in targets and "aten.hardsigmoid.default" not in targets
    assert_no_float_edge(graph)
    # the hard-sigmoid's x + 3 is quantized once, after its ReLU6, as TFLite's ADD with a fused ReLU6
    # computes it (quantized twice, a trained model's add and ReLU6 scales differ and so did the file)
    relu6s = [n for n in graph.nodes if str(n.target) == "aten.relu6.default"]
    assert len(relu6s) == 2 and all(str(n.args[0].target) == "aten.add.Tensor" for n in relu6s)
    # the global means (TFLite MEAN) requantize to a scale of their own: finer than their input's
    means = [n for n in graph.nodes if str(n.target) == "aten.adaptive_avg_pool2d.default"]
    assert len(means) == 3
    for mean in means:
        (dq,) = mean.args[:1]
        (q,) = mean.users
        assert q.args[1] < dq.args[1] / 2, (mean.name, dq.args[1], q.args[1])


def test_resnet8_qat_graph_quantizes_before_the_pool(pt2e) -> None:
    """ResNet-8's last residual add + ReLU feeds the global average pool: it alone left that add
    float, quantized only after the pool, and the converter then picked the ADD's int8 scale (the
    pooled range, clipping what is pooled) or a pool with unequal scales. Now the ReLU output is
    quantized, and the pool, captured as a mean over H×W (TFLite MEAN), requantizes to a finer
    scale of its own: a full-window AVERAGE_POOL_2D had to keep its input's scale and rounded ties
    apart from the fake-quant graph (a converged ResNet-8's QAT file: 98.35 % agreement with its
    fake-quant graph, up to 9 output steps; as a mean 99.35 %, 3 steps)."""
    import torch

    from edgekd.models import create_model
    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    model = QATStudent(create_model("resnet8", 10, 3, (32, 32)), [0.5] * 3, [0.25] * 3, (32, 32))
    model(torch.randn(8, 3, 32, 32))
    graph = model.eval().converted().graph
    assert_no_float_edge(graph)
    assert not any(str(n.target) == "aten.avg_pool2d.default" for n in graph.nodes)
    pool = next(n for n in graph.nodes if str(n.target) == "aten.mean.dim")
    (dq,) = pool.args[:1]
    assert str(dq.args[0].target).startswith("quantized_decomposed.quantize_per_tensor")  # the ReLU's int8
    (q,) = pool.users
    assert q.args[1] < dq.args[1] / 2  # a mean's range is a fraction of its input's: a finer scale


def test_global_mean_of_a_one_pixel_map_keeps_its_inputs_quantization(pt2e) -> None:
    """A squeeze-excitation on a 1×1 map (MobileNetV3-small's last blocks on 32×32 images): its mean
    is the identity, which the converter drops with any requantization, so it shares its input's
    scale and zero point; on a larger map the mean keeps a scale of its own."""
    import torch
    from torch import nn
    from torchvision.ops.misc import SqueezeExcitation

    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Hardswish(),
        SqueezeExcitation(16, 8, scale_activation=nn.Hardsigmoid),  # on 4×4
        nn.Conv2d(16, 16, 4),  # → 1×1
        nn.Hardswish(),
        SqueezeExcitation(16, 8, scale_activation=nn.Hardsigmoid),  # on 1×1
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    model = QATStudent(net, [0.5] * 3, [0.25] * 3, (4, 4))
    graph = model.graph  # the fake-quant graph: one fake quantizer module per quantized tensor
    means = [n for n in graph.graph.nodes if str(n.target) == "aten.adaptive_avg_pool2d.default"]
    assert len(means) == 2
    shared = []
    for mean in means:
        (before,), (after,) = mean.args[:1], mean.users
        assert before.op == after.op == "call_module"
        shared.append(getattr(graph, before.target) is getattr(graph, after.target))
    assert shared == [False, True]


def test_qat_graph_keeps_each_batchnorms_eps_and_momentum(pt2e) -> None:
    """torchao rewrites BatchNorms with eps 1e-5 and momentum 0.1 (QAT conv-BN fusion, train/eval
    switches); a model built with others (torchvision's MobileNetV3: 0.001, 0.01) must stay itself:
    with its fake quantizers off the QAT graph is the float model, in either mode after any switch,
    and the int8 fold into the conv uses the model's eps."""
    import torch
    from torch import nn

    from edgekd.train.qat import QATStudent, _fake_quantizers, calibrate

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8, eps=1e-3, momentum=0.01),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8, eps=1e-3, momentum=0.01),
        nn.Flatten(),
        nn.Linear(8 * 16, 10),
    )
    for bn in (net[1], net[4]):  # variances near eps: 1e-3 against 1e-5 is a factor of 3 in the fold
        bn.running_var.uniform_(1e-4, 2e-3)
        bn.running_mean.uniform_(-0.1, 0.1)
    net.eval()
    model = QATStudent(net, [0.5] * 3, [0.25] * 3, (4, 4))
    x = (torch.rand(64, 3, 4, 4) - 0.5) / 0.25  # pixels 0–255, the input quantizer's range
    with torch.no_grad():
        expected = net(x)
    model.train().eval()  # every switch rewrites the BatchNorms
    for fq in _fake_quantizers(model.graph):
        fq.disable_fake_quant()
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-4, rtol=1e-4)
    model.train()
    bns = [n for n in model.graph.graph.nodes if str(n.target) == "aten.batch_norm.default"]
    assert len(bns) == 2 and all(n.args[5:8] == (True, 0.01, 1e-3) for n in bns)
    for fq in _fake_quantizers(model.graph):
        fq.enable_fake_quant()
    calibrate(model, [(x, None)], 1)  # ranges observed on these inputs, BN on its statistics
    model.eval()
    pixels = x * 0.25 * 255 + 0.5 * 255
    with torch.no_grad():
        got = model.converted()(pixels)
    err = (got - expected).abs().max() / expected.abs().max()
    assert err < 0.05, f"int8 graph off by {err:.0%} of the output range"


def test_frozen_batchnorm_trains_on_the_running_statistics(pt2e) -> None:
    """``freeze_bn`` (``distill.qat.bn_epochs``): training steps see the running statistics and
    never move them, a train/eval switch keeps it so, and the switch is in the state dict (resume)."""
    import torch
    from torch import nn

    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
    net.eval()
    model = QATStudent(net, [0.5] * 3, [0.25] * 3, (4, 4))
    x = (torch.rand(32, 3, 4, 4) - 0.5) / 0.25
    stats = [b.clone() for n, b in model.graph.named_buffers() if n.endswith(("running_mean", "running_var"))]
    model.freeze_bn()
    model.eval().train()
    assert model.training and bool(model.state_dict()["bn_frozen"])
    bns = [n for n in model.graph.graph.nodes if str(n.target) == "aten.batch_norm.default"]
    assert bns and all(n.args[5] is False for n in bns)  # training flag off while the model trains
    model(x).sum().backward()
    after = [b for n, b in model.graph.named_buffers() if n.endswith(("running_mean", "running_var"))]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))
    again = QATStudent(net, [0.5] * 3, [0.25] * 3, (4, 4))
    again.load_state_dict(model.state_dict())
    again.train()
    assert all(n.args[5] is False for n in again.graph.graph.nodes if str(n.target) == "aten.batch_norm.default")


def test_resnet8_qat_pads_keep_their_inputs_quantization(pt2e) -> None:
    """The SAME padding of ResNet-8's strided convs is a zero pad: it shares its input's int8
    scale and zero point (TFLite's PAD), instead of a range of its own that the file requantizes
    (a trained ResNet-8's QAT file then departed from its fake-quant graph on ~3 % of the padded
    values; with this and int32 biases, 100 % top-1 agreement on 2,000 CIFAR-10 test images)."""
    import torch

    from edgekd.models import create_model
    from edgekd.train.qat import QATStudent

    torch.manual_seed(0)
    model = QATStudent(create_model("resnet8", 10, 3, (32, 32)), [0.5] * 3, [0.25] * 3, (32, 32))
    model(torch.randn(8, 3, 32, 32))
    graph = model.eval().converted().graph
    pads = [n for n in graph.nodes if str(n.target) == "aten.pad.default"]
    assert len(pads) == 2  # the two stride-2 stages
    for pad in pads:
        (dq,) = pad.args[:1]
        (q,) = pad.users
        assert str(q.target).startswith("quantized_decomposed.quantize_per_tensor")
        assert (q.args[1], q.args[2]) == (dq.args[1], dq.args[2])  # same scale and zero point: no requantize


def test_qat_graph_folds_the_normalization_where_the_export_does(pt2e, tmp_path: Path) -> None:
    """A zero-mean student (configs/cifar10-tiny.yaml's) has its normalization folded into the first
    conv by the PTQ export; the QAT graph kept it as a 1×1 depthwise conv with a requantization of
    its own (one more op and one more rounding in the QAT file). Now it is folded there too: no
    normalize tensors, the same function with every fake quantizer off, and a student_qat.pt of it
    loads back (built on meta first). A mean that cannot fold keeps the depthwise."""
    import torch

    from edgekd.checkpoint import model_payload, save_checkpoint
    from edgekd.models import create_model
    from edgekd.train.qat import QAT_GRAPH_VERSION, QATStudent, _fake_quantizers, load_qat_student

    std = [0.247, 0.2435, 0.2616]
    for mean, folds in (([0.0] * 3, True), ([0.49, 0.48, 0.45], False)):
        torch.manual_seed(0)
        student = create_model("resnet8", 10, 3, (32, 32)).eval()
        model = QATStudent(student, mean, std, (32, 32))
        assert any("normalize" in k for k in model.graph.state_dict()) is not folds, mean
        x = torch.randn(4, 3, 32, 32)
        model.eval()
        for fq in _fake_quantizers(model.graph):
            fq.disable_fake_quant()
        with torch.no_grad():
            assert (model(x) - student(x)).abs().max() < 1e-3, mean
    data = {"num_classes": 10, "in_channels": 3, "image_size": [32, 32], "mean": [0.0] * 3, "std": std}
    model = QATStudent(student, [0.0] * 3, std, (32, 32))
    model.train()
    model(torch.randn(8, 3, 32, 32))
    model.eval()
    save_checkpoint(
        tmp_path / "student_qat.pt",
        model_payload(model, "resnet8", {}, data, "student_qat", qat={"graph": QAT_GRAPH_VERSION}),
    )
    loaded, _ = load_qat_student(tmp_path / "student_qat.pt")
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(("frozen_bn", "optimizer"), [(False, "sgd"), (True, "sgd"), (False, "adamw")])
def test_folded_first_conv_learns_at_the_float_models_pace(pt2e, frozen_bn: bool, optimizer: str) -> None:
    """The folded first conv's weights are 1/(255·std) times the float ones (about 1/64), and their
    gradients 64 times larger: one SGD step moved them ~4,000 times as much, relative to their
    size, as the same step moved the float model's conv. QAT of the tiny recipe's zero-mean
    ResNet-8 lost a point to it, and with frozen BN statistics collapsed to chance within steps.
    Now one step of the QAT graph changes the folded weight by the same fraction as the float
    step changes the unfolded one (fake quantization perturbs the gradient a little); under AdamW,
    whose steps ignore the gradient's scale, through the folded weight's own lr."""
    import torch

    from edgekd.config import StageConfig
    from edgekd.models import create_model
    from edgekd.train.qat import QATStudent
    from edgekd.train.trainer import make_optimizer, set_lr

    std = [0.247, 0.2435, 0.2616]
    torch.manual_seed(0)
    student = create_model("resnet8", 10, 3, (32, 32)).eval()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))

    def relative_step(model, weight) -> float:
        before = weight.detach().clone()
        recipe = StageConfig(optimizer=optimizer, lr=0.01, momentum=0.9, weight_decay=5e-4)
        opt = make_optimizer(recipe, [p for p in model.parameters() if p.requires_grad])
        set_lr(opt, recipe.lr)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        return float((weight.detach() - before).norm() / before.norm())

    qat = QATStudent(student, [0.0] * 3, std, (32, 32))
    qat.eval().train()  # ranges from a forward pass before the step, as calibration sets them
    with torch.no_grad():
        qat(x)
    if frozen_bn:
        qat.freeze_bn()
    folded = qat.graph.get_parameter("model.conv1.weight")
    assert folded.abs().mean() < student.conv1.weight.abs().mean() / 30  # the fold did happen
    qat_step = relative_step(qat, folded)
    float_model = create_model("resnet8", 10, 3, (32, 32))
    float_model.load_state_dict(student.state_dict())
    float_model.train()
    if frozen_bn:
        float_model.eval()  # BN on its running statistics, as freeze_bn trains
    float_step = relative_step(float_model, float_model.conv1.weight)
    assert 0.5 < qat_step / float_step < 2.0, (qat_step, float_step)


@pytest.fixture(scope="module")
def mnv3_qat(pt2e, tmp_path_factory: pytest.TempPathFactory):
    """A MobileNetV3-like QAT student converted once: (fake-quant model, int8 file, eval images).
    One torch thread: the observers' ranges, and so the int8 scales, depend on the float summation
    order, and the fidelity test below must not pass or fail with the machine's core count."""
    import torch

    from edgekd.exporters.to_tflite_qat import qat_to_tflite
    from edgekd.train.qat import QATStudent

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = QATStudent(_mnv3_like(), [0.5] * 3, [0.25] * 3, (16, 16))
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (300, 16, 16, 3), dtype=np.uint8)
        x = (torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)) / 255 - 0.5) / 0.25
        model.train()
        with torch.no_grad():
            for i in range(0, 200, 50):
                model(x[i : i + 50])  # observers see real ranges
        model.eval()
        path = qat_to_tflite(model, (1, 3, 16, 16), tmp_path_factory.mktemp("mnv3") / "mnv3_qat_int8.tflite")
    finally:
        torch.set_num_threads(threads)
    return model, path, images[200:]


@pytest.mark.slow  # one litert-torch conversion: a few minutes on a loaded 2-core machine
def test_mobilenet_v3_like_qat_is_full_integer(mnv3_qat) -> None:
    """Hard-swish, squeeze-excitation (hard-sigmoid) and consecutive in-place residuals: every
    op of the QAT int8 file is int8 (litert-torch alone left the hard-sigmoid and the second
    residual add in float behind DEQUANTIZE ops) and TFLite Micro runs it as LiteRT does."""
    from conftest import assert_tflm_matches_litert
    from edgekd.exporters.to_tflite_qat import integer_problems
    from edgekd.mcu.support import missing_ops
    from edgekd.tflite_file import read_tflite

    _, path, eval_images = mnv3_qat
    assert integer_problems(path) == []
    ops = read_tflite(path).op_names
    assert "DEQUANTIZE" not in ops and "HARD_SWISH" in ops and "MUL" in ops  # the SE's scale, int8
    assert missing_ops(path) == []
    # TFLite Micro's reference HARD_SWISH and MEAN round differently from LiteRT's optimized ones
    assert_tflm_matches_litert(path, eval_images[:10], steps=3)


@pytest.mark.slow
def test_mobilenet_v3_like_qat_int8_matches_its_fake_quant_graph(mnv3_qat) -> None:
    """The int8 file computes what the QAT student was trained as: every op within one step of the
    fake-quant graph on its own inputs, the logits within one step. Was up to 5 steps (issue 15):
    the squeeze-excitation's MEAN shared its input's scale, its kernels rounded a coarse step
    their own way, and the SE's first 1×1 convolution amplified that."""
    from edgekd.exporters.parity import reference_logits
    from edgekd.runtimes import open_runner

    model, path, eval_images = mnv3_qat
    reference = reference_logits(model.reference(), eval_images)
    runner = open_runner(path)
    out = runner.predict(eval_images)
    assert np.abs(out - reference).max() <= runner.output_details["scale"] + 1e-6  # measured: 0 steps (was 5)
    assert float(np.mean(out.argmax(1) == reference.argmax(1))) >= 0.99


@pytest.mark.slow
def test_integer_hardswish_is_the_files_hard_swish(mnv3_qat) -> None:
    """Every HARD_SWISH of the QAT int8 file, on its own int8 inputs, gives exactly the table of
    ``edgekd.train.int8_kernels`` under LiteRT's default CPU path, its builtin kernels and the
    reference ones (TFLite Micro's code), where exact rounding of the float hard-swish is a
    step off on ~0.1 % of the values."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekd.train.int8_kernels import hardswish_table

    _, path, eval_images = mnv3_qat
    for resolver in (None, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.BUILTIN_REF):
        kwargs = {} if resolver is None else {"experimental_op_resolver_type": resolver}
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1, **kwargs)
        it.allocate_tensors()
        tensors = {d["index"]: d for d in it.get_tensor_details()}
        ops = [o for o in it._get_ops_details() if o["op_name"] == "HARD_SWISH"]
        assert ops
        checked = 0
        for image in eval_images[:20]:
            it.set_tensor(it.get_input_details()[0]["index"], (image[None].astype(np.int16) - 128).astype(np.int8))
            it.invoke()
            for op in ops:
                a, b = tensors[op["inputs"][0]], tensors[op["outputs"][0]]
                (s_in,), (zp_in,) = a["quantization_parameters"]["scales"], a["quantization_parameters"]["zero_points"]
                (s_out,), (zp_out,) = (
                    b["quantization_parameters"]["scales"],
                    b["quantization_parameters"]["zero_points"],
                )
                q_in = it.get_tensor(a["index"]).astype(np.int64)
                table = hardswish_table(float(s_in), int(zp_in), float(s_out), int(zp_out))
                np.testing.assert_array_equal(table[q_in + 128], it.get_tensor(b["index"]))
                checked += q_in.size
        assert checked > 1000


@pytest.mark.slow  # two distill runs, two litert-torch conversions: minutes on a loaded 2-core machine
def test_distill_with_qat_stage_resumes_and_exports(pt2e, tmp_path: Path) -> None:
    """distill.qat adds the student_qat stage (own summary row, resumable) and export writes the
    QAT int8 file beside the PTQ one, checked against the fake-quant graph, with its quant report."""
    from edgekd.exporters.export import export
    from edgekd.train.run import distill

    out = tmp_path / "run"
    overrides = tiny_overrides(
        **{
            "distill.baseline": "false",
            "teacher.epochs": 2,
            "student.epochs": 4,
            "student.lr": 0.2,
            "distill.qat.epochs": 2,
        }
    )
    summary = distill(out=out, set=overrides)
    qat = summary["student_qat"]
    assert qat["epochs"] == 2 and qat["qat"]["epochs"] == 2 and 0 < qat["test_acc"] <= 1
    assert json.loads((out / "summary.json").read_text())["student_qat"]["test_acc"] == qat["test_acc"]
    # interrupted after QAT epoch 1: resuming continues from student_qat_last.pt
    (out / "student_qat.pt").unlink()
    resumed = distill(out=out, resume=True)
    assert resumed["student_qat"]["epochs"] == 2

    bundle = tmp_path / "bundle"
    m = export(
        run=out,
        out=bundle,
        set=["export.models=[student]", "export.formats=[tflite_fp32,tflite_int8]"],
        allow_parity_failure=True,
    )
    qm = m["metrics"]["student_qat_int8.tflite"]
    assert qm["reference"].startswith("fake-quant") and qm["top1_agreement"] >= 0.99
    assert m["models"]["student_qat_int8.tflite"]["input"]["dtype"] == "int8"
    report = json.loads((bundle / "quant_report.json").read_text())
    assert set(report["files"]) == {"student_int8.tflite", "student_qat_int8.tflite"}
    r = report["files"]["student_qat_int8.tflite"]
    computing = [x for x in r["layers"] if x["op"] not in ("TRANSPOSE", "PAD", "RESHAPE")]
    assert r["reference"] == "student_fp32.tflite" and r["matched_layers"] == len(computing)
    # paired with the right float layers: int8 error only (plus what QAT moved), tens of dB, never negative
    assert all(x["reference_tensor"] and x["snr_db"] is not None and x["snr_db"] > 10 for x in computing), computing
    # export.qat=false: the PTQ file alone (a bundle whose rows do not hang on the QAT file's)
    m = export(
        run=out,
        out=tmp_path / "ptq",
        set=["export.models=[student]", "export.formats=[tflite_int8]", "export.qat=false"],
        allow_parity_failure=True,  # the 4-channel test student's PTQ int8 is not what is checked here
    )
    assert set(m["models"]) == {"student_int8.tflite"}


def test_calibration_methods_choose_their_ranges() -> None:
    from edgekd.exporters.calibration import CALIBRATIONS
    from edgekd.registry import UnknownNameError

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 20000), [40.0, -35.0]])  # two outliers stretch min-max
    lo, hi = float(values.min()), float(values.max())
    assert CALIBRATIONS.get("minmax")(values, lo, hi, 256) == (lo, hi)
    p_lo, p_hi = CALIBRATIONS.get("percentile")(values, lo, hi, 256)
    assert -6 < p_lo < -3 and 3 < p_hi < 6
    m_lo, m_hi = CALIBRATIONS.get("mse")(values, lo, hi, 256)
    assert lo < m_lo < 0 < m_hi < hi  # shrunk: the rounding error saved outweighs the two clipped values

    def mse(a: float, b: float) -> float:
        scale = (b - a) / 255
        return float(np.mean((values - (np.clip(np.round((values - a) / scale), 0, 255) * scale + a)) ** 2))

    assert mse(m_lo, m_hi) < mse(lo, hi)
    with pytest.raises(UnknownNameError, match="did you mean 'mse'"):
        CALIBRATIONS.get("mes")


def test_calibration_method_is_a_litert_export_choice() -> None:
    assert (
        load_config(
            None, ["export.backend=litert_torch", "export.calibration_method=percentile"]
        ).export.calibration_method
        == "percentile"
    )
    with pytest.raises(ConfigError, match="needs export.backend=litert_torch"):
        load_config(None, ["export.calibration_method=mse"])
    with pytest.raises(ConfigError, match="did you mean 'mse'"):
        load_config(None, ["export.backend=litert_torch", "export.calibration_method=mes"])


def test_qat_stage_reads_the_float_students_teacher_cache(pt2e, tmp_path: Path, monkeypatch) -> None:
    """The QAT stage's teacher outputs are the float KD stage's (same teacher, data and views):
    read from its cache file, not computed and stored a second time."""
    from edgekd.train.run import distill

    out = tmp_path / "run"
    sets = {"distill.baseline": "false", "teacher.epochs": 1, "student.epochs": 1, "distill.qat.epochs": 1}
    distill(out=out, set=tiny_overrides(**sets, **{"data.views": 2}))
    assert [p.name.split("-")[0] for p in (out / "teacher_cache").glob("*.pt")] == ["student"]

    # the QAT checkpoint names its graph layout; one from an older layout is refused, not misloaded
    import torch

    from edgekd.errors import CheckpointError
    from edgekd.train.qat import load_qat_student

    _, ckpt = load_qat_student(out / "student_qat.pt")
    del ckpt["qat"]["graph"]
    torch.save(ckpt, tmp_path / "old_qat.pt")
    with pytest.raises(CheckpointError, match="layout 1; .* run the QAT stage again"):
        load_qat_student(tmp_path / "old_qat.pt")

    # export refuses it before writing anything (not after the teacher's and student's files)
    from edgekd.exporters.export import export

    torch.save(ckpt, out / "student_qat.pt")

    def no_model_first(*args, **kwargs):
        raise AssertionError("a model was loaded before the QAT checkpoint was checked")

    monkeypatch.setattr("edgekd.checkpoint.load_model", no_model_first)
    with pytest.raises(CheckpointError, match="layout 1"):
        export(run=out, out=tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_qat_stage_can_distill_the_float_student(pt2e, tmp_path: Path) -> None:
    """``distill.qat.teacher=student``: the QAT loss distills the float student's own outputs, cached
    under a stem of their own (the float stage's cache file stays); the choice is recorded."""
    import torch

    from edgekd.train.run import distill

    out = tmp_path / "run"
    sets = {"distill.baseline": "false", "teacher.epochs": 1, "student.epochs": 1, "distill.qat.epochs": 1}
    distill(out=out, set=tiny_overrides(**sets, **{"data.views": 2, "distill.qat.teacher": "student"}))
    caches = sorted((out / "teacher_cache").glob("*.pt"))
    assert sorted(p.name.split("-")[0] for p in caches) == ["student", "student_qat"]
    ckpt = torch.load(out / "student_qat.pt", weights_only=False)
    assert ckpt["qat"]["teacher"] == "student"
    # the QAT stage's targets are the float student's outputs, not the teacher's
    qat_targets = torch.load(next(p for p in caches if p.name.startswith("student_qat")), weights_only=True)
    float_targets = torch.load(next(p for p in caches if not p.name.startswith("student_qat")), weights_only=True)
    assert qat_targets.shape == float_targets.shape and not torch.allclose(qat_targets, float_targets)


def test_quant_report_without_a_float_file_says_so_instead_of_an_empty_table(capsys) -> None:
    from edgekd.exporters.quant_report import print_quant_report

    layer = {"index": 0, "op": "CONV_2D", "snr_db": None}
    print_quant_report({"files": {"student_int8.tflite": {"reference": None, "images": 64, "layers": [layer]}}})
    out = capsys.readouterr().out
    assert "student_int8.tflite: no SNR (no float file in the bundle" in out and "┏" not in out


def test_quant_report_names_the_ops_it_did_not_compare(capsys) -> None:
    from edgekd.exporters.quant_report import print_quant_report

    base = {"float_min": 0.0, "float_max": 1.0, "scale": 0.01, "clipped": 0.0}
    layers = [
        {**base, "index": 0, "op": "CONV_2D", "snr_db": 30.0},
        {**base, "index": 7, "op": "CONV_2D", "snr_db": None, "unpaired": "the float op's output is 1·this + 3"},
    ]
    print_quant_report({"files": {"q.tflite": {"reference": "student_fp32.tflite", "images": 64, "layers": layers}}})
    out = capsys.readouterr().out
    assert "not compared: 1 op(s) (# 7)" in out and "30.0" in out
