"""PT2E quantization tooling, imported on demand: torchao's ``prepare_qat_pt2e``/``convert_pt2e``
and litert-torch's TFLite ``PT2EQuantizer`` (the ``litert`` extra), with one compatibility patch.
Kept apart from :mod:`edgekd.train.qat` so that the config check can ask for it without importing
the trainer."""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from edgekd.errors import EdgekdError

INSTALL_HINT = "pip install 'edgekd[litert]' (torchao + litert-torch, whose PT2E quantizer matches TFLite int8)"


def _patch_pattern_export() -> None:
    """torchao 0.18 hands plain functions (its conv-BN patterns) to ``torch.export.export``, which
    torch 2.14 refuses ("Expected `mod` to be an instance of `torch.nn.Module`"); wrap them in a
    module. Applied to every module that imported the helper by name. Idempotent."""
    import torchao.quantization.pt2e.qat_utils  # noqa: F401 - imports the helper by name: patch it there too
    import torchao.quantization.pt2e.utils as utils

    original = utils._get_aten_graph_module_for_pattern
    if getattr(original, "edgekd_patched", False):
        return

    class _Pattern(nn.Module):
        def __init__(self, fn: Any) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.fn(*args, **kwargs)

    def patched(pattern: Any, example_inputs: Any, is_cuda: bool = False, **kwargs: Any) -> Any:
        if not isinstance(pattern, nn.Module):
            pattern = _Pattern(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    patched.edgekd_patched = True  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if (
            name.startswith(("torchao.", "litert_torch."))
            and getattr(module, "_get_aten_graph_module_for_pattern", None) is original
        ):
            module._get_aten_graph_module_for_pattern = patched


def import_pt2e() -> dict[str, Any]:
    """The PT2E functions and litert-torch's quantizer, or one clear error naming the extra."""
    from edgekd.fdcapture import captured_fds

    try:
        with captured_fds():  # litert-torch imports TensorFlow's converter, which logs to fd 2 on import
            from litert_torch.quantize import pt2e_quantizer
            from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "torchao"
        raise EdgekdError(
            f"distill.qat needs torchao and litert-torch ({missing} is not installed): {INSTALL_HINT}"
        ) from None
    _patch_pattern_export()
    return {
        "pt2e_quantizer": pt2e_quantizer,
        "prepare_qat_pt2e": prepare_qat_pt2e,
        "convert_pt2e": convert_pt2e,
        "to_eval": move_exported_model_to_eval,
        "to_train": move_exported_model_to_train,
    }


_ELEMENTWISE = ("add.Tensor", "add_.Tensor", "mul.Tensor", "mul_.Tensor")
_RELU = ("aten.relu.default", "aten.relu_.default", "aten.relu6.default", "aten.relu6_.default")
_HARDTANH = ("aten.hardtanh.default", "aten.hardtanh_.default")
_POOL = ("aten.avg_pool2d.default",)
_PAD = ("aten.pad.default", "aten.constant_pad_nd.default")
_MEAN = ("aten.adaptive_avg_pool2d.default", "aten.mean.dim")


def _is_global_mean(node: Any) -> bool:
    """An average of an NCHW tensor over all of H×W (``AdaptiveAvgPool2d(1)``,
    ``x.mean((2, 3))``): TFLite's MEAN. Other output sizes keep litert-torch's annotation."""
    value = node.args[0].meta.get("val")
    if value is None or value.dim() != 4:
        return False
    if str(node.target) == "aten.adaptive_avg_pool2d.default":
        size = node.args[1]
        return list(size) == [1, 1] if isinstance(size, (list, tuple)) else size == 1
    dims = node.args[1] if len(node.args) > 1 else None
    return isinstance(dims, (list, tuple)) and sorted(d % 4 for d in dims) == [2, 3]


def _is_zero_pad(node: Any) -> bool:
    """A constant pad with zeros (``F.pad(x, pads)``: the SAME padding of a strided conv)."""
    if str(node.target) == "aten.constant_pad_nd.default":
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
        return value in (0, 0.0)
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    return mode == "constant" and value in (None, 0, 0.0)


def _fusable_activation(node: Any) -> bool:
    """A ReLU or ReLU6 (``hardtanh(0, 6)`` included): TFLite fuses it into the ADD or MUL before it."""
    if str(node.target) in _RELU:
        return True
    return str(node.target) in _HARDTANH and tuple(node.args[1:3]) == (0.0, 6.0)


def _annotate_global_means(model: Any, activations: set[Any], act: Any) -> None:
    """A global mean's output gets its own int8 quantization (input: its producer's).

    litert-torch shares the input's scale with it, as for a pool. TFLite's int8 MEAN kernels then
    take their equal-scales path, which rounds its own way where the fake-quant graph rounds half
    to even (LiteRT's builtin kernel gives ⌊(Σ + 33) / 64⌋ for a mean of 64 steps; XNNPACK's rule
    differs again): one step apart on 1–3 % of the means. A mean's range is a fraction of its
    input's, so that step is coarse, and a squeeze-excitation amplifies it (its first 1×1
    convolution's output scale is ~10× finer than its input's): a MobileNetV3-like int8 file was up
    to 5 steps from its fake-quant graph at the logits, every op within one step of it on its own
    inputs. With a scale of its own (~9× finer there) MEAN requantizes: XNNPACK's kernel then
    rounds as the fake-quant graph does, LiteRT's builtin one is a step off on 4–14 % of the means,
    but a step that fine, and the file is within one output step on both.

    A mean over a 1×1 map is the identity, and the converter drops it with its requantization
    (MobileNetV3-small's last squeeze-excitations on 32×32 images): the next op reads the input's
    int8 tensor. Such a mean shares its input's quantization instead, so the fake-quant graph does
    not round where the file does not (its own scale had put 17 % of a short-trained
    MobileNetV3-small's CIFAR-10 logits a step off the file's)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    for n in model.graph.nodes:
        if n.op != "call_function" or str(n.target) not in _MEAN or n not in activations or not _is_global_mean(n):
            continue
        source = n.args[0]
        produced = source.meta.get("quantization_annotation")
        shared = produced is not None and produced.output_qspec is not None
        input_spec = SharedQuantizationSpec(source) if shared else act
        identity = tuple(source.meta["val"].shape[2:]) == (1, 1)
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={source: input_spec},
            output_qspec=SharedQuantizationSpec((source, n)) if identity else act,
            _annotated=True,
        )


def annotate_elementwise(model: Any, config: Any) -> Any:
    """Annotate what litert-torch's quantizer leaves out, so that no activation edge stays float.

    * Adds and multiplies of activations. Its ``add``/``mul`` annotators find ops by the Python
      source they came from, so an add of a constant (``x + 3`` of a hard-sigmoid) or a residual
      add whose input is the previous residual add (``result += x`` twice, one source partition)
      kept a float edge: a DEQUANTIZE and a float ADD in the file. Every add/mul whose inputs derive
      from the graph's input (the BatchNorm arithmetic of QAT's conv fold does not) gets int8 on each
      input and on its output, or, when a ReLU or ReLU6 alone follows, on its output only (an ADD or
      MUL with a fused activation in TFLite, as its ``add_relu`` annotator does). Quantizing the add
      as well made the fake-quant graph round twice where the file rounds once: the hard-sigmoid's
      ``relu6(x + 3)`` of a trained MobileNetV3 was one step off on up to 85 % of its values, the
      add's range being wider than the ReLU6's.
    * A full-window ``avg_pool2d`` (edgekd's ``GlobalAvgPool``, AVERAGE_POOL_2D in TFLite) shares
      its input's quantization, as its ``adaptive_avg_pool2d`` annotator does: TFLite's int8
      AVERAGE_POOL_2D requires equal input and output scales. Unannotated, the last residual
      add + ReLU of a ResNet stayed float in the fake-quant graph and was quantized only after the
      pool, so the converter chose the ADD's int8 scale itself (the pooled range, which clips the
      values before pooling) or wrote a pool whose scales differ, which no kernel prepares.
    * A zero pad (the SAME padding of a strided conv, edgekd's ``SameConv2d``) shares its input's
      quantization too: zero is on every asymmetric int8 grid, and TFLite's PAD keeps the scale.
      Left out, the conv's input quantizer gave the pad's output a range of its own, the file
      requantized it, and that rounding departed from the fake-quant graph on ~3 % of a CIFAR-10
      ResNet-8's padded values (up to 3 steps, growing to 20 % of the values two layers on).
    * A global mean (``AdaptiveAvgPool2d(1)``, MEAN in TFLite) is the exception: its output gets a
      scale of its own (:func:`_annotate_global_means`).

    What the quantizer already annotated keeps its specs; same-scale ops (ReLU6, reshape, flatten,
    mean) then share their producer's scale (litert-torch's ``propagate_annotation``)."""
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as qu
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    activations: set[Any] = set()
    for n in model.graph.nodes:
        if n.op == "placeholder" or any(a in activations for a in n.all_input_nodes):
            activations.add(n)
    act = qu.get_input_act_qspec(config)

    def annotated_output(node: Any) -> bool:
        a = node.meta.get("quantization_annotation")
        return a is not None and a.output_qspec is not None

    for n in model.graph.nodes:
        if n.op != "call_function" or not any(str(n.target).endswith(e) for e in _ELEMENTWISE):
            continue
        inputs = [a for a in n.args[:2] if isinstance(a, torch.fx.Node)]
        if not inputs or not all(a in activations or a.op == "get_attr" for a in inputs):
            continue
        if not any(a in activations for a in inputs):
            continue
        old = n.meta.get("quantization_annotation")
        specs = dict(old.input_qspec_map) if old is not None else {}
        for a in inputs:
            specs.setdefault(a, act)
        users = list(n.users)
        relu = users[0] if len(users) == 1 and _fusable_activation(users[0]) else None
        if relu is not None:
            # add + ReLU(6): one quantized output, after the ReLU (TFLite fuses it into the ADD)
            n.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=specs, _annotated=True)
            if not annotated_output(relu):
                relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act, _annotated=True)
            continue
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=specs,
            output_qspec=old.output_qspec if old is not None and old.output_qspec is not None else act,
            _annotated=True,
        )
    for n in model.graph.nodes:
        if n.op != "call_function" or n not in activations:
            continue
        if str(n.target) not in _POOL and not (str(n.target) in _PAD and _is_zero_pad(n)):
            continue
        if n.meta.get("quantization_annotation") is not None:
            continue
        source = n.args[0]
        input_spec = SharedQuantizationSpec(source) if annotated_output(source) else act
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={source: input_spec},
            output_qspec=SharedQuantizationSpec((source, n)),
            _annotated=True,
        )
    _annotate_global_means(model, activations, act)
    qu.propagate_annotation(model)
    return model


def tflite_quantizer(pt2e: dict[str, Any] | None = None) -> Any:
    """The TFLite int8 quantizer: per-channel weights, QAT fake quantizers (training and export
    use the same), and :func:`annotate_elementwise` after litert-torch's own annotators."""
    pt2e = pt2e or import_pt2e()
    q = pt2e["pt2e_quantizer"]

    class TFLiteQuantizer(q.PT2EQuantizer):  # type: ignore[misc,name-defined]
        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            return annotate_elementwise(model, self.global_config)

    return TFLiteQuantizer().set_global(q.get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


_BIASED = ("aten.conv2d.default", "aten.linear.default")
# the converted graph's (de)quantize ops, by name; edgekd.train.int8_kernels finds the int8
# tensors and weights of the ops it rewrites through them too
DQ_TENSOR = "quantized_decomposed.dequantize_per_tensor.default"
Q_TENSOR = "quantized_decomposed.quantize_per_tensor.default"
DQ_CHANNEL = "quantized_decomposed.dequantize_per_channel.default"
Q_CHANNEL = "quantized_decomposed.quantize_per_channel.default"


def round_biases_to_int32(graph: Any) -> int:
    """Put every conv/linear bias of a converted (QDQ) graph on the int32 grid TFLite stores it on
    (scale: input scale × each output channel's weight scale); returns how many were rounded.

    The QDQ graph adds the float bias, the int8 file its int32 rounding: up to half a bias step
    apart, ~0.005 of an output step on a CIFAR-10 ResNet-8, enough to round the output the other
    way where it lies that close to a half step, on every conv, before every add. The bias of a
    trained model is then what the file holds, and litert-torch writes the same int32 values from
    it (each already on its grid)."""
    import torch

    rounded = 0
    for n in graph.graph.nodes:
        if n.op != "call_function" or str(n.target) not in _BIASED or len(n.args) < 3:
            continue
        x, w, b = n.args[:3]
        if not all(isinstance(a, torch.fx.Node) for a in (x, w, b)) or b.op != "get_attr":
            continue
        if str(x.target) != DQ_TENSOR or str(w.target) != DQ_CHANNEL or w.args[3] != 0:
            continue
        s_in, s_w = x.args[1], w.args[1]
        if isinstance(s_in, torch.fx.Node) or not isinstance(s_w, torch.fx.Node) or s_w.op != "get_attr":
            continue  # a layout this rounding does not know: left as it is
        bias = graph_constant(graph, str(b.target))
        step = float(s_in) * graph_constant(graph, str(s_w.target)).double()
        q = torch.round(bias.detach().double() / step).clamp(-(2**31), 2**31 - 1)
        _set_graph_constant(graph, str(b.target), (q * step).to(bias.dtype))
        rounded += 1
    return rounded


def snap_weights_to_int8_grid(graph: Any) -> int:
    """Put every per-channel quantized weight of a converted (QDQ) graph exactly on its int8 grid
    (each value its int8 step × its channel's scale); returns how many weights were snapped.

    The QDQ graph quantizes each float weight with PyTorch's rounding; the converter quantizes the
    same float weight again with its own. Where a weight lies at (or within float error of) half a
    step the two disagree: one weight of a MobileNetV3-small's 1.5 M was a step apart, enough to
    move its layer's output near a half step. On the grid, both roundings give the same integer."""
    import torch

    snapped = 0
    for n in graph.graph.nodes:
        if n.op != "call_function" or str(n.target) != Q_CHANNEL:
            continue
        w = n.args[0]
        if not isinstance(w, torch.fx.Node) or w.op != "get_attr":
            continue
        if not all(isinstance(a, torch.fx.Node) and a.op == "get_attr" for a in n.args[1:3]):
            continue  # scales and zero points are constants of a converted graph; anything else is left
        args = [graph_constant(graph, str(a.target)) if isinstance(a, torch.fx.Node) else a for a in n.args[1:]]
        scale, zero_point, axis = args[0], args[1], args[2]
        weight = graph_constant(graph, str(w.target))
        q = torch.ops.quantized_decomposed.quantize_per_channel(weight.detach(), *args)
        shape = [1] * weight.dim()
        shape[axis] = -1
        new = ((q.to(torch.float64) - zero_point.view(shape)) * scale.view(shape).double()).to(weight.dtype)
        _set_graph_constant(graph, str(w.target), new)
        snapped += 1
    return snapped


def graph_constant(graph: Any, target: str) -> Any:
    """The tensor a ``get_attr`` target (``"sub.module.name"``) of a graph module names."""
    owner, _, attr = target.rpartition(".")
    return getattr(graph.get_submodule(owner) if owner else graph, attr)


def _set_graph_constant(graph: Any, target: str, value: Any) -> None:
    """Replace a graph constant's values in place (a parameter stays a parameter)."""
    import torch

    owner, _, attr = target.rpartition(".")
    module = graph.get_submodule(owner) if owner else graph
    current = getattr(module, attr)
    with torch.no_grad():
        if isinstance(current, torch.nn.Parameter):
            current.copy_(value)
        else:
            setattr(module, attr, value)


BNLiterals = dict[str, tuple[float | None, float]]  # running-variance path → (momentum, eps)

# (BN op, its momentum and eps argument positions): aten.batch_norm's schema is
# (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
_BATCH_NORM_LITERALS = {
    "aten.batch_norm.default": (6, 7),
    "aten._native_batch_norm_legit.default": (6, 7),
    "aten._native_batch_norm_legit_no_training.default": (5, 6),
}


def batchnorm_literals(model: nn.Module) -> BNLiterals:
    """``{running-variance path: (momentum, eps)}`` of every BatchNorm in ``model``: the paths are
    the ``get_attr`` targets of a graph exported from it."""
    return {
        f"{name}.running_var": (m.momentum, m.eps)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    }


def restore_batchnorm_literals(graph: Any, literals: BNLiterals) -> int:
    """Give every BatchNorm of a PT2E graph its model's momentum and eps again (``graph`` modified
    and recompiled); returns how many nodes were changed.

    torchao's QAT conv-BN fusion writes its pattern with eps 1e-5 (its "TODO: allow setting eps"),
    and its train/eval switches (``move_exported_model_to_train``/``_eval``) rewrite every
    BatchNorm from patterns with eps 1e-5 and momentum 0.1. A model built with other values trained
    and folded as another model: torchvision's MobileNetV3 (eps 0.001, momentum 0.01) came out of
    the QAT graph with its fake quantizers off agreeing with itself on 86 % of CIFAR-10 images, and
    QAT spent its epochs making up for that. A BN is found by its running variance (a graph
    constant named as in the model); the fusion's ``sqrt(running_var + eps)`` gets the eps too."""
    import torch

    changed = 0
    for n in graph.graph.nodes:
        if n.op != "call_function":
            continue
        positions = _BATCH_NORM_LITERALS.get(str(n.target))
        if positions is not None and len(n.args) > positions[1]:
            var = n.args[4]
            if isinstance(var, torch.fx.Node) and var.op == "get_attr" and str(var.target) in literals:
                momentum, eps = literals[str(var.target)]
                args = list(n.args)
                if momentum is not None:  # None: a cumulative average, left as traced
                    args[positions[0]] = momentum
                args[positions[1]] = eps
                if tuple(args) != n.args:
                    n.args = tuple(args)
                    changed += 1
        elif n.target is torch.ops.aten.add.Tensor and len(n.args) == 2 and isinstance(n.args[1], float):
            var = n.args[0]
            if isinstance(var, torch.fx.Node) and var.op == "get_attr" and str(var.target) in literals:
                eps = literals[str(var.target)][1]
                if n.args[1] != eps:
                    n.args = (var, eps)
                    changed += 1
    if changed:  # called at every train/eval switch; most find nothing to change
        graph.recompile()
    return changed


# the eps torchao's QAT conv-BN fold computes with, whatever the BN node says (its folded pattern's
# BatchNorm is written with the default)
_FOLD_EPS = 1e-5


def move_eps_into_running_var(graph: Any, literals: BNLiterals) -> BNLiterals:
    """Make every BatchNorm of a PT2E graph compute its model's function with eps 1e-5: each
    running variance becomes ``var + eps − 1e-5`` (``graph`` modified); returns the literals to
    keep it so (each eps 1e-5).

    ``convert_pt2e`` folds a QAT conv-BN with the eps of its own pattern (1e-5), not the model's;
    ``(x − mean) / sqrt(var + eps)`` is unchanged when the variance carries the difference, so
    the fold is the model's. For the copy that is converted, never for training: BN training
    would average the shift away."""
    moved = {}
    for target, (momentum, eps) in literals.items():
        moved[target] = (momentum, _FOLD_EPS)
        if eps == _FOLD_EPS:
            continue
        try:
            var = graph_constant(graph, target)
        except AttributeError:
            continue  # not in this graph (a BN the export dropped)
        _set_graph_constant(graph, target, var + (eps - _FOLD_EPS))
    restore_batchnorm_literals(graph, moved)
    return moved
