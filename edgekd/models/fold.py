"""The input normalization ``(x/255 − mean)/std`` of a raw-pixel model
(:class:`edgekd.models.wrappers.WithPreprocessing`) folded into its first convolution, where that
is exact: the scale always, the shift only when the convolution pads nothing or the shift is 0
(zero padding of the normalized image is padding with the *mean* pixel). The export's lean graph
(:mod:`edgekd.exporters.lean`) and the QAT graph (:mod:`edgekd.train.qat`) both use it, so a
student whose normalization folds has no 1×1 depthwise convolution in front in either file.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgekd.models.layers import GlobalAvgPool, SameConv2d, same_pads


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """(path, conv) when the model's input feeds exactly one ``nn.Conv2d`` and nothing else."""
    from torch import fx

    class Tracer(fx.Tracer):  # our layers read input sizes as ints: kept whole, like torch's own
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, (SameConv2d, GlobalAvgPool)) or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
    except Exception:  # noqa: BLE001 - a model fx cannot trace (data-dependent control flow): nothing to fold
        return None
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or len(inputs[0].users) != 1:
        return None
    user = next(iter(inputs[0].users))
    if user.op != "call_module":
        return None
    conv = model.get_submodule(user.target)
    return (user.target, conv) if type(conv) in (nn.Conv2d, SameConv2d) else None


def pads_nothing(conv: nn.Conv2d, size: tuple[int, int]) -> bool:
    if isinstance(conv, SameConv2d):
        return not any(
            same_pads(n, k, s, d) != (0, 0) for n, k, s, d in zip(size, conv.kernel_size, conv.stride, conv.dilation)
        )
    return conv.padding_mode == "zeros" and all(p == 0 for p in conv.padding) and not isinstance(conv.padding, str)


def fold_normalization(wrapped: nn.Module, image_size: tuple[int, int], trainable: bool = False) -> nn.Module | None:
    """``wrapped.model`` (a copy) with ``wrapped.normalize`` folded into its first convolution, or
    None where that would not be exact (see the module docstring). A convolution without a bias
    gets one only for a shift that is not 0. ``trainable``: the folded weights keep learning (QAT);
    otherwise they are frozen and the model is in eval mode (export)."""
    found = fold_normalization_at(wrapped, image_size, trainable)
    return None if found is None else found[0]


def fold_normalization_at(
    wrapped: nn.Module, image_size: tuple[int, int], trainable: bool = False
) -> tuple[nn.Module, str, torch.Tensor] | None:
    """:func:`fold_normalization` with where it folded: (model, the convolution's path, the scale
    per input channel its weight was multiplied by, ``1/(255·std)``)."""
    norm: nn.Conv2d = wrapped.normalize
    scale, shift = norm.weight.detach().view(-1), norm.bias.detach()  # a, b per channel
    model = copy.deepcopy(wrapped.model)
    found = first_conv(model)
    if found is None:
        return None
    path, conv = found
    if conv.groups != 1 or conv.in_channels != scale.numel():
        return None
    shifted = bool(shift.abs().max() > 0)
    if shifted and not pads_nothing(conv, image_size):
        return None
    with torch.no_grad():
        weight = conv.weight.detach().clone()  # (O, C, kh, kw)
        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter(weight * scale.view(1, -1, 1, 1), requires_grad=trainable)
        if conv.bias is not None or shifted:
            bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
            bias += (weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
            folded.bias = nn.Parameter(bias, requires_grad=trainable)
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, folded)
    return (model.train(wrapped.training) if trainable else model.eval()), path, scale.clone()


class FoldedInput(nn.Module):
    """A model whose normalization was folded (:func:`fold_normalization`), raw pixels in, kept
    under ``model`` as in :class:`~edgekd.models.wrappers.WithPreprocessing`: a graph captured from
    either names the student's tensors ``model.…``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unfolded_steps(weight: nn.Parameter, scale: torch.Tensor) -> None:
    """Make SGD move a trainable folded ``weight`` (:func:`fold_normalization_at`) as it would
    move the convolution's own weight ``w`` before the fold, ``weight = w·scale``.

    The folded values are ``scale`` (1/(255·std): about 1/64 on CIFAR-10) times smaller and their
    gradients ``1/scale`` times larger, so the same SGD step changed them about 4,000 times as much,
    relative to their size, as the float stage changed ``w``: QAT of a zero-mean ResNet-8 lost a
    point at lr 1e-3 and, with frozen BatchNorm statistics, collapsed to chance in a few steps. With
    the gradient times ``scale²`` every SGD step (momentum, Nesterov and weight decay included, all
    linear in it) is ``scale`` times the step on ``w``, exactly. The hook lives on the parameter, so
    it survives moving the model between devices. AdamW's steps do not scale with the gradient:
    ``weight.fold_scale`` tells :func:`edgekd.train.trainer.make_optimizer` to scale its lr instead."""
    weight.fold_scale = scale.detach().clone()
    factor = (scale.detach() ** 2).view(1, -1, *([1] * (weight.dim() - 2)))

    def rescale(grad: torch.Tensor) -> torch.Tensor:
        return grad * factor.to(grad.device, grad.dtype)

    weight.register_hook(rescale)
