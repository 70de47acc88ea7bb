"""The model registry: every model builds for CIFAR- and digits-shaped input; sizes are right."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import MODELS, count_macs, count_params, create_model
from edgekd.registry import Registry, UnknownNameError


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (3, 13, 11)])
def test_every_model_runs(name: str, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    model = create_model(name, 7, c, (h, w)).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, c, h, w)).shape == (2, 7)


def test_resnet8_has_the_mlperf_tiny_shape() -> None:
    model = create_model("resnet8", 10, 3, (32, 32))
    assert count_macs(model, (1, 3, 32, 32)) == 12_501_632  # MLPerf Tiny's published figure
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [m.out_channels for m in convs] == [16, 16, 16, 32, 32, 64, 64]


def test_capacity_grows_with_depth() -> None:
    params = [count_params(create_model(f"plain{d}", 10, 3, (32, 32))) for d in (2, 4, 6, 8, 10)]
    assert params == sorted(params)
    params = [count_params(create_model(f"resnet{d}", 10, 3, (32, 32))) for d in (8, 14, 20, 32, 56, 110)]
    assert params == sorted(params)


def test_foreign_factory_and_errors() -> None:
    model = create_model("torchvision.models:resnet18", 5, 3, (32, 32))
    assert model.fc.out_features == 5
    with pytest.raises(EdgekdError, match="cannot import 'no_such_module'"):
        create_model("no_such_module:thing", 5, 3, (32, 32))
    with pytest.raises(EdgekdError, match="has no attribute 'nope'"):
        create_model("torchvision.models:nope", 5, 3, (32, 32))
    with pytest.raises(UnknownNameError, match="unknown model 'resnet9'; did you mean 'resnet8'"):
        create_model("resnet9", 5, 3, (32, 32))
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
