"""The model registry: every model builds for CIFAR- and digits-shaped input; sizes are right."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import count_macs, count_params, create_model, list_models
from edgekd.registry import Registry, UnknownNameError


@pytest.mark.parametrize("name", list_models(task="classification"))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (3, 13, 11)])
def test_every_model_runs(name: str, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    model = create_model(name, 7, c, (h, w)).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, c, h, w)).shape == (2, 7)


@pytest.mark.parametrize("name", list_models(task="segmentation"))
def test_every_segmentation_model_keeps_the_input_size(name: str) -> None:
    """One logit per class and pixel, at any size its poolings divide; other sizes fail clearly."""
    factor = 2 ** create_model(name, 1, 3, (32, 32)).depth
    for c, h, w in [(3, 32, 32), (1, 2 * factor, 3 * factor)]:
        model = create_model(name, 1, c, (h, w)).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, c, h, w)).shape == (2, 1, h, w)
            # size-agnostic: the same weights take another size that divides
            assert model(torch.zeros(1, c, 2 * h, w)).shape == (1, 1, 2 * h, w)
            with pytest.raises(EdgekdError, match=f"multiples of {factor}"):
                model(torch.zeros(1, c, h + 1, w))
    with pytest.raises(EdgekdError, match=f"must be multiples of {factor}, got 13×11 .*data.image_size"):
        create_model(name, 1, 3, (13, 11))


def test_unet_sizes_and_ops_suit_a_microcontroller() -> None:
    """The student is MCU-sized; only int8/TFLM-friendly modules appear (conv, BN, ReLU, max-pool,
    nearest upsampling)."""
    tiny, small = create_model("unet_tiny", 1, 3, (32, 32)), create_model("unet_small", 1, 3, (32, 32))
    assert count_params(tiny) < 5_000 and count_macs(tiny, (1, 3, 32, 32)) < 1.5e6
    assert count_params(small) > 20 * count_params(tiny)
    allowed = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.Upsample)
    leaves = [m for m in small.modules() if not list(m.children())]
    assert all(isinstance(m, allowed) for m in leaves), {type(m).__name__ for m in leaves}
    assert all(m.mode == "nearest" for m in leaves if isinstance(m, torch.nn.Upsample))


def test_resnet8_has_the_mlperf_tiny_shape() -> None:
    model = create_model("resnet8", 10, 3, (32, 32))
    assert count_macs(model, (1, 3, 32, 32)) == 12_501_632  # MLPerf Tiny's published figure
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [m.out_channels for m in convs] == [16, 16, 16, 32, 32, 64, 64]


def test_capacity_grows_with_depth() -> None:
    params = [count_params(create_model(f"plain{d}", 10, 3, (32, 32))) for d in (2, 4, 6, 8, 10)]
    assert all(a < b for a, b in zip(params, params[1:])), params  # strictly: equal sizes would not be "growing"
    params = [count_params(create_model(f"resnet{d}", 10, 3, (32, 32))) for d in (8, 14, 20, 32, 56, 110)]
    assert all(a < b for a, b in zip(params, params[1:])), params


def test_foreign_factory_and_errors() -> None:
    model = create_model("torchvision.models:resnet18", 5, 3, (32, 32))
    assert model.fc.out_features == 5
    with pytest.raises(EdgekdError, match="cannot import 'no_such_module'"):
        create_model("no_such_module:thing", 5, 3, (32, 32))
    with pytest.raises(EdgekdError, match="has no attribute 'nope'"):
        create_model("torchvision.models:nope", 5, 3, (32, 32))
    with pytest.raises(UnknownNameError, match="unknown model 'resnet9'; did you mean 'resnet8'"):
        create_model("resnet9", 5, 3, (32, 32))
    with pytest.raises(UnknownNameError, match="unknown model 'zzzz'; available: "):  # no close name
        create_model("zzzz", 5, 3, (32, 32))
    with pytest.raises(EdgekdError, match="rejected its arguments"):
        create_model("resnet8", 5, 3, (32, 32), depth=3)


def test_registry_warns_on_overwrite_and_filters() -> None:
    reg: Registry = Registry("thing")
    reg.register("a_one")(len)
    reg.register("b_two")(abs)
    assert reg.names("a_*") == ["a_one"] and "b_two" in reg
    with pytest.warns(UserWarning, match="registered again"):
        reg.register("a_one")(max)
    assert reg.get("a_one") is max


def test_mobilenetv3_small_is_a_cifar_sized_mobilenetv3() -> None:
    """Hard-swish, squeeze-excitation with a hard-sigmoid gate, 3×3/5×5 depthwise convolutions; the
    stem keeps 32×32 and the last block leaves 4×4 (torchvision's mobilenet_v3_small: 1×1)."""
    from edgekd.models.layers import SameConv2d

    model = create_model("mobilenetv3_small", 10, 3, (32, 32)).eval()
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Hardswish", "Hardsigmoid", "SqueezeExcitation"} <= kinds
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert {m.kernel_size for m in depthwise} == {(3, 3), (5, 5)}
    assert all(isinstance(m, SameConv2d) for m in depthwise if m.stride == (2, 2))  # no PAD op in int8
    shapes = []
    model.features[0].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[-2:])))
    model.features[-1].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[-2:])))
    model(torch.zeros(1, 3, 32, 32))
    assert shapes == [(32, 32), (4, 4)]
    assert 5e6 < count_macs(model, (1, 3, 32, 32)) < 6e6 and count_params(model) < 450_000  # width 0.5
    wide = create_model("mobilenetv3_small", 10, 3, (32, 32), width=1.0)
    assert count_params(wide) > 3 * count_params(model)
    with pytest.raises(EdgekdError, match="width must be in"):
        create_model("mobilenetv3_small", 10, 3, (32, 32), width=0)


@pytest.mark.parametrize("name", ["plain2", "resnet8", "resnet8_s2", "mobilenetv2_small"])
@pytest.mark.parametrize("width", [0, -1, float("nan"), True, "wide"])
def test_a_width_multiplier_that_is_not_above_zero_is_refused(name: str, width) -> None:
    """The channel counts are clamped to at least one per layer: width 0 or -1 built a model of
    one-channel layers that distill trained to chance with exit 0."""
    with pytest.raises(EdgekdError, match=f"model '{name}' rejected its arguments .*width must be a number above 0"):
        create_model(name, 10, 1, (8, 8), width=width)
