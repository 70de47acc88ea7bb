"""Quantization-aware distillation (``distill.qat``): the float KD student, fine-tuned with fake
quantization that matches TFLite int8, the teacher's soft targets still in the loss.

The fake quantization is PyTorch's own PT2E tooling (``torchao.quantization.pt2e``) annotated by
litert-torch's ``PT2EQuantizer``, the quantizer written for TFLite: per-channel symmetric int8
weights (−127…127), per-tensor asymmetric int8 activations, BatchNorm folded into the conv (QAT
simulates the fold while it still trains BN), ReLU/ReLU6 fused into the conv's output
quantization, round-half-to-even like the TFLite kernels. The same quantizer object then drives
the export (:mod:`edgekd.exporters.to_tflite_qat`), so the learned scales and zero points are the
ones written into the int8 file: nothing is calibrated again.

The graph captured is the exported one: :func:`edgekd.models.wrappers.with_preprocessing` around
the student, taking raw pixels. Its input quantization is fixed at scale 1, zero point −128 (every
pixel exact, as in the PTQ files). The trainer feeds normalized batches, so :class:`QATStudent`
turns them back into pixels first.

Saved as ``student_qat.pt``: the prepared graph's state dict (float weights, BN statistics and
every fake-quantizer's range and scale) plus the student's arch. Loading rebuilds the graph from
the arch and loads those tensors: nothing named in the file is imported or called, and the float
student is built on the meta device first (:func:`check_qat_fits`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.train.pt2e import (
    batchnorm_literals,
    import_pt2e,
    move_eps_into_running_var,
    restore_batchnorm_literals,
    round_biases_to_int32,
    snap_weights_to_int8_grid,
    tflite_quantizer,
)


def _fake_quantizers(graph: nn.Module) -> list[nn.Module]:
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    return [m for m in graph.modules() if isinstance(m, FakeQuantizeBase)]


def _input_quantizer(graph: torch.fx.GraphModule) -> nn.Module:
    """The fake quantizer applied to the graph's (pixel) input."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    placeholder = next(n for n in graph.graph.nodes if n.op == "placeholder")
    for user in placeholder.users:  # the input's users also include torch.export's guard module
        if user.op == "call_module" and isinstance(graph.get_submodule(str(user.target)), FakeQuantizeBase):
            return graph.get_submodule(str(user.target))
    raise EdgekdError(
        "QAT graph: no fake quantizer on the input (the quantizer did not annotate the first op)"
    )  # a model we cannot quantize


class GlobalMeanInt8(nn.Module):
    """Global average pooling as a mean over H×W (TFLite MEAN), not a full-window average pool.

    An int8 AVERAGE_POOL_2D must keep its input's scale, and its kernel rounds ties its own way
    where the fake-quant graph rounds half to even: a pooled value one input step off, a coarse step
    for a mean whose range is a fraction of its input's, and the classifier after it amplifies it
    (a converged ResNet-8's QAT file was up to 5 output steps from its fake-quant graph). A MEAN
    gets an int8 scale of its own (:func:`edgekd.train.pt2e.annotate_elementwise`) and requantizes
    the way the fake-quant graph does. The same computation: the float model is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def int8_friendly(model: nn.Module) -> nn.Module:
    """``model`` (modified in place) with every ``nn.Hardsigmoid`` replaced by
    :class:`~edgekd.models.layers.HardSigmoidInt8` (litert-torch would leave it in float) and every
    :class:`~edgekd.models.layers.GlobalAvgPool` by :class:`GlobalMeanInt8`."""
    from edgekd.models.layers import GlobalAvgPool, hardsigmoid_as_ops, replace_modules

    hardsigmoid_as_ops(model)
    replace_modules(model, GlobalAvgPool, GlobalMeanInt8)
    return model


def functional_adds(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Every in-place ``add_`` of two computed tensors made an ``add`` (``graph`` modified).

    A residual written ``result += x`` exports as ``aten.add_``; when the next block's residual
    adds to that result, PT2E leaves the edge between the two in-place adds without a fake
    quantizer and the int8 file gets a float ADD behind a DEQUANTIZE (MobileNetV3-small's last
    blocks). The add is functional when nothing reads the mutated tensor afterwards, which is
    checked: a buffer update (BatchNorm's ``num_batches_tracked``) or a later reader keeps ``add_``."""
    order = {n: i for i, n in enumerate(graph.graph.nodes)}
    for n in list(graph.graph.nodes):
        if n.op != "call_function" or n.target is not torch.ops.aten.add_.Tensor:
            continue
        target = n.args[0]
        if not isinstance(target, torch.fx.Node) or target.op != "call_function":
            continue  # a placeholder or a buffer (get_attr): the mutation is the point
        if any(order[u] > order[n] for u in target.users if u is not n):
            continue
        n.target = torch.ops.aten.add.Tensor
    graph.recompile()
    return graph


class QATStudent(nn.Module):
    """The student under fake quantization: normalized batches in (like the trainer's), logits out.

    ``graph`` is the prepared PT2E graph of the raw-pixel model; ``.train()``/``.eval()`` switch
    its BatchNorms the PT2E way (an exported graph ignores ``Module.train``).
    """

    def __init__(
        self, student: nn.Module, mean: Sequence[float], std: Sequence[float], image_size: tuple[int, int]
    ) -> None:
        super().__init__()
        from edgekd.models.fold import FoldedInput, fold_normalization_at, unfolded_steps
        from edgekd.models.wrappers import with_preprocessing

        self._pt2e = import_pt2e()
        c = len(mean)
        # pixels = normalized · 255·std + 255·mean; buffers, so they follow .to(device)
        self.register_buffer("pixel_scale", torch.tensor([255.0 * s for s in std]).view(1, c, 1, 1))
        self.register_buffer("pixel_shift", torch.tensor([255.0 * m for m in mean]).view(1, c, 1, 1))
        wrapped = with_preprocessing(int8_friendly(copy.deepcopy(student).cpu()), mean, std).train()
        # where exact (a zero mean, or a first conv that pads nothing) the normalization is folded
        # into the first conv, as the PTQ export folds it: no 1×1 depthwise and its requantization
        fold = fold_normalization_at(wrapped, image_size, trainable=True)
        if fold is not None:
            wrapped = FoldedInput(fold[0]).train()
        # the BatchNorms' own momentum and eps, which torchao's rewrites replace by its defaults
        self._bn_literals = batchnorm_literals(wrapped)
        example = (torch.zeros(2, c, *image_size),)  # batch 2: a dynamic batch dim (1 would be specialized)
        batch = torch.export.Dim("batch", min=1, max=65536)
        exported = functional_adds(torch.export.export(wrapped, example, dynamic_shapes=({0: batch},)).module())
        self.graph = self._pt2e["prepare_qat_pt2e"](exported, tflite_quantizer(self._pt2e))
        restore_batchnorm_literals(self.graph, self._bn_literals)
        if fold is not None:  # the captured graph names the student's tensors model.…
            unfolded_steps(self.graph.get_parameter(f"model.{fold[1]}.weight"), fold[2])
        fq = _input_quantizer(self.graph)
        # the input is pixels 0–255: scale 1, zero point −128 is exact; never learned
        fq.activation_post_process.min_val = torch.tensor(0.0)
        fq.activation_post_process.max_val = torch.tensor(255.0)
        scale, zero_point = fq.activation_post_process.calculate_qparams()
        fq.scale.copy_(scale.reshape(fq.scale.shape))
        fq.zero_point.copy_(zero_point.reshape(fq.zero_point.shape))
        fq.disable_observer()
        self._input_name = next(n for n, m in self.graph.named_modules() if m is fq)
        # saved with the weights: a resumed run whose ranges were frozen keeps them frozen
        self.register_buffer("observers_frozen", torch.tensor(False))
        self.register_buffer("bn_frozen", torch.tensor(False))  # the same for BN statistics
        self.train()

    def train(self, mode: bool = True) -> QATStudent:
        """Training: BN on batch statistics (until frozen), ranges observed (until frozen). Eval: BN
        on running statistics and ranges fixed, so evaluating never moves them."""
        self.training = mode
        self._switch(self.graph, mode and not bool(self.bn_frozen))
        self._observe(mode and not bool(self.observers_frozen))
        return self

    def _switch(self, graph: torch.fx.GraphModule, training: bool) -> None:
        """``graph``'s BatchNorms and dropouts to training or inference, with the model's BN eps
        and momentum (:func:`~edgekd.train.pt2e.restore_batchnorm_literals`)."""
        (self._pt2e["to_train"] if training else self._pt2e["to_eval"])(graph)
        restore_batchnorm_literals(graph, self._bn_literals)

    def _observe(self, on: bool) -> None:
        for name, fq in self._named_fake_quantizers():
            if on and name != self._input_name:
                fq.enable_observer()
            else:
                fq.disable_observer()

    def _named_fake_quantizers(self) -> list[tuple[str, nn.Module]]:
        ids = {id(m) for m in _fake_quantizers(self.graph)}
        return [(n, m) for n, m in self.graph.named_modules() if id(m) in ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) normalized → logits
        pixels = x.float() * self.pixel_scale + self.pixel_shift
        return self.graph(pixels)

    def pixel_model(self) -> nn.Module:
        """The prepared graph itself: raw pixels (NCHW float) in, as the exported files take."""
        return self.graph

    def freeze_observers(self) -> None:
        """Stop moving the activation ranges and weight scales (observer buffers are saved, so a
        resumed run stays frozen)."""
        self.observers_frozen.fill_(True)
        self._observe(False)

    def freeze_bn(self) -> None:
        """Train on the BatchNorms' running statistics from now on, without updating them: the
        conv-BN fold trained is then the one exported (saved, so a resumed run stays frozen). The
        exported graph switches BN and dropout together, so dropout is off too."""
        self.bn_frozen.fill_(True)
        self.train(self.training)

    def converted(self) -> torch.fx.GraphModule:
        """A CPU copy as a quantize/dequantize (QDQ) graph, raw pixels in: the model the int8 file
        must agree with. Weight quantize ops stay in the graph (litert-torch lowers them itself)."""
        graph = copy.deepcopy(self.graph).cpu()
        self._pt2e["to_eval"](graph)
        # every BN's literals are set here (eps 1e-5, the variance moved): the fold computes with 1e-5
        literals = move_eps_into_running_var(graph, self._bn_literals)
        converted = self._pt2e["convert_pt2e"](graph, fold_quantize=False)
        self._pt2e["to_eval"](converted)
        restore_batchnorm_literals(converted, literals)  # a BN left unfolded keeps the moved variance
        snap_weights_to_int8_grid(converted)  # one int8 weight, whatever the converter's rounding
        round_biases_to_int32(converted)  # the file's int32 biases, not the float ones
        return converted

    def reference(self) -> torch.fx.GraphModule:
        """:meth:`converted` with TFLite's integer hard-swish, convolutions (exact int32 sums,
        float32 requantization) and adds in place of the float ones, and no inference dropout
        (:mod:`edgekd.train.int8_kernels`): what the int8 file computes under LiteRT's default CPU
        path, op for op. The parity reference; the converter takes :meth:`converted`, whose plain
        ops it lowers to TFLite's."""
        from edgekd.train.int8_kernels import emulate_integer_kernels

        graph = self.converted()
        emulate_integer_kernels(graph)
        return graph


def build_qat_student(float_model: nn.Module, data_info: dict[str, Any]) -> QATStudent:
    """A :class:`QATStudent` of ``float_model`` on data described by ``data_info`` (``Dataset.describe()``)."""
    return QATStudent(float_model.eval(), data_info["mean"], data_info["std"], tuple(data_info["image_size"]))


# The fake-quant graph's layout: bumped when capture or annotation changes which tensors have a
# fake quantizer (2: global means as MEAN with a scale of their own, an add/mul + ReLU6 quantized
# once after the ReLU6; 3: a zero pad shares its input's quantizer; 4: so does a global mean over a
# 1×1 map; 5: BatchNorms keep the model's eps and momentum, which torchao had replaced by 1e-5 and
# 0.1, so a MobileNetV3's QAT weights were trained for another normalization; 6: a normalization
# that folds exactly is folded into the first conv). An older student_qat.pt may still load key for
# key while its tensors mean something else: it is refused.
QAT_GRAPH_VERSION = 6


def check_qat_checkpoint(path: Any) -> dict[str, Any]:
    """The checkpoint dict of ``student_qat.pt`` when this edgekd can rebuild its graph; one
    :class:`~edgekd.errors.CheckpointError` line otherwise. Builds nothing: export calls it before
    any file is written."""
    from edgekd.checkpoint import load_checkpoint
    from edgekd.errors import CheckpointError

    ckpt = load_checkpoint(path)
    if not ckpt.get("qat"):
        raise CheckpointError(f"{path} is not a QAT checkpoint")
    version = ckpt["qat"].get("graph", 1) if isinstance(ckpt["qat"], dict) else 1
    if version != QAT_GRAPH_VERSION:
        raise CheckpointError(
            f"{path} holds a QAT graph of layout {version}; this edgekd builds layout {QAT_GRAPH_VERSION} "
            "(global pools as MEAN, fused ReLU6, zero pads on their input's scale, the model's BatchNorm eps, "
            "the normalization folded where exact): "
            "run the QAT stage again (distill.qat)"
        )
    return ckpt


# where the float student's own tensors sit in a QAT state dict: QATStudent.graph, captured from
# with_preprocessing(student) or FoldedInput, whose ``model`` is the student (torch.export keeps their names)
FLOAT_PREFIX = "graph.model."


def check_qat_fits(ckpt: dict[str, Any], path: Any, arch: Any = None) -> str:
    """The architecture of a ``student_qat.pt`` checkpoint, once the float student it describes,
    built on the meta device (shapes, no storage), takes the file's float tensors; one
    :class:`~edgekd.errors.CheckpointError` line otherwise. The file's arch and kwargs are data: a
    ``width`` edited to 1e6 had the real build ask for terabytes. ``arch``: the ``module:factory``
    names the caller vouches for (:func:`edgekd.checkpoint.checkpoint_arch`)."""
    from edgekd.checkpoint import check_fits, checkpoint_arch

    name = checkpoint_arch(ckpt, path, arch)  # before anything named in the file is imported
    d = ckpt["data"]
    floats = {k[len(FLOAT_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(FLOAT_PREFIX)}
    shape = (d["num_classes"], d["in_channels"], tuple(d["image_size"]))
    check_fits(name, shape, ckpt.get("kwargs", {}), floats, path)
    return name


def qat_student_from(ckpt: dict[str, Any], path: Any, arch: Any = None) -> QATStudent:
    """The QAT student (eval mode) of a checkpoint :func:`check_qat_checkpoint` returned, built
    for real only after :func:`check_qat_fits` built it on meta."""
    from edgekd.checkpoint import load_weights
    from edgekd.models import create_model

    d = ckpt["data"]
    name = check_qat_fits(ckpt, path, arch)
    model = build_qat_student(
        create_model(name, d["num_classes"], d["in_channels"], tuple(d["image_size"]), **ckpt.get("kwargs", {})), d
    )
    load_weights(model, ckpt["state_dict"], path)
    return model.eval()


def load_qat_student(path: Any, arch: Any = None) -> tuple[QATStudent, dict[str, Any]]:
    """(QAT student in eval mode, checkpoint dict) from ``student_qat.pt``. ``arch``: the
    ``module:factory`` names the caller vouches for (:func:`edgekd.checkpoint.checkpoint_arch`)."""
    ckpt = check_qat_checkpoint(path)
    return qat_student_from(ckpt, path, arch), ckpt


def calibrate(model: QATStudent, batches: Any, limit: int) -> None:
    """Set the activation ranges from ``limit`` training batches before the first step, BN in eval
    mode (its trained statistics), so QAT starts from the PTQ ranges instead of the first batch's."""
    model.eval()
    model._observe(True)
    with torch.no_grad():
        for i, (x, _y) in enumerate(batches):
            if i >= limit:
                break
            model(x)
    model.train()


def qat_stage(run: Any, teacher: nn.Module) -> dict[str, Any]:
    """Train ``student_qat`` from the finished float ``student`` with the run's KD loss; its record.

    A named stage like the others: resuming skips it when done and continues it when interrupted
    (the fake quantizers' ranges and the observer switches are in the checkpoint's state dict).
    """
    import dataclasses

    from edgekd.checkpoint import build_model, load_checkpoint
    from edgekd.config import named_archs
    from edgekd.data.loader import Batches
    from edgekd.models.layers import set_bn_momentum
    from edgekd.train.methods import build_method
    from edgekd.train.trainer import Stage, data_settings, train_stage
    from edgekd.ui import log

    name = "student_qat"
    done = run.done(name)
    if done is not None:
        run.wall[name] = done["metrics"]["wall_s"]
        return done["metrics"]
    cfg = run.cfg
    d, teacher = run.own_input(cfg.student, run.data, teacher, name)  # the float student's statistics
    q = cfg.distill.qat
    float_path = run.out_dir / "student.pt"
    float_ckpt = load_checkpoint(float_path)
    torch.manual_seed(cfg.seed)
    float_model = build_model(float_ckpt, float_path, named_archs(cfg))
    set_bn_momentum(
        float_model, cfg.student.bn_momentum
    )  # traced into the QAT graph, whose BN trains on (folded at convert)
    model = build_qat_student(float_model, d.describe())
    # fake quantization runs in float32 (no autocast) and on a plain (not compiled) graph
    rt = dataclasses.replace(run.rt, amp=None, channels_last=False, compile_student=False)
    model.to(rt.device)
    resuming = run.resume and (run.out_dir / f"{name}_last.pt").is_file()
    if not resuming:
        calib = Batches(
            d.train, d.mean, d.std, cfg.data.batch_size, rt.device, shuffle=True, seed=cfg.seed, shard=rt.world.shard
        )
        calibrate(model, calib, q.calibration_batches)
        if q.bn_epochs == 0:
            model.freeze_bn()
    recipe = dataclasses.replace(cfg.student, epochs=q.epochs, lr=q.lr, warmup_epochs=0, checkpoint=None)
    method = build_method(cfg.distill.method, cfg.distill, recipe)
    if q.teacher == "student" and method.needs_teacher:
        # a copy of its own: the QAT graph may share the float model's tensors, and training moves them.
        # Its outputs have another cache key (the teacher's weights are in it): computed once here
        teacher = build_model(float_ckpt, float_path, named_archs(cfg)).eval()
    stage = Stage(
        name=name,
        arch=float_ckpt["arch"],
        kwargs=dict(float_ckpt.get("kwargs", {})),
        recipe=recipe,
        method=method,
        teacher=teacher if method.needs_teacher else None,
        **data_settings(cfg.data),
        # the float KD stage's teacher outputs (the same teacher, data and views), or, distilling the
        # float student, a cache of its own: a stem's stale files are deleted, the float stage's must stay
        cache_name=name if q.teacher == "student" else "student",
        extra={
            "method": cfg.distill.method,
            "qat": {
                "epochs": q.epochs,
                "lr": q.lr,
                "observer_epochs": q.observer_epochs,
                "bn_epochs": q.bn_epochs,
                "teacher": q.teacher,
                "quantizer": "litert_torch.PT2EQuantizer per-channel int8",
                "graph": QAT_GRAPH_VERSION,
            },
            "distill": {"temperature": cfg.distill.temperature, "alpha": getattr(method, "alpha", cfg.distill.alpha)},
        },
    )

    def freeze(record: dict[str, Any], _history: list[dict[str, Any]]) -> None:
        if q.observer_epochs is not None and record["epoch"] >= q.observer_epochs:
            model.freeze_observers()
        if q.bn_epochs is not None and record["epoch"] >= q.bn_epochs:
            model.freeze_bn()

    log(
        f"{name}: {stage.arch} with {cfg.distill.method}"
        f"{' from the float student' if q.teacher == 'student' and method.needs_teacher else ''}"
        f" under int8 fake quantization for {q.epochs} epochs (lr {q.lr}"
        f"{', BN statistics frozen' if q.bn_epochs == 0 else ''})"
    )
    result = train_stage(stage, model, d, run.out_dir, rt, cfg.seed, "last", run.resume, [freeze, *run.on_epoch])
    result["qat"] = stage.extra["qat"]
    run.wall[name] = result["wall_s"]
    return result
