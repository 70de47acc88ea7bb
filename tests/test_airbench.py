"""The airbench-style teacher: shape, the whitening init from data (deterministic, recorded), training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint, load_model
from edgekd.errors import EdgekdError
from edgekd.models import count_params, create_model
from edgekd.train.run import distill


def test_full_size_shape_and_params() -> None:
    model = create_model("airbench", 10, 3, (32, 32))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert 1.9e6 < count_params(model) < 2.1e6  # airbench94's widths: ~2 M parameters
    from edgekd.models import count_macs

    assert count_macs(model, (1, 3, 32, 32)) == 118_147_360  # the docstring's 0.118 G
    assert create_model("airbench", 10, 1, (8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 10)  # ceil-mode pools
    with pytest.raises(EdgekdError, match="three positive"):
        create_model("airbench", 10, 3, (32, 32), widths=[8, 8])


def test_whitening_init_whitens_patches_and_is_deterministic() -> None:
    torch.manual_seed(0)
    # correlated pixels: a smooth random field, so whitening has something to undo
    x = torch.nn.functional.avg_pool2d(torch.randn(64, 3, 20, 20), 3, 1)  # (64, 3, 18, 18)
    a, b = create_model("test_airbench", 10, 3, (18, 18)), create_model("test_airbench", 10, 3, (18, 18))
    record = a.data_init(x)
    b.data_init(x)
    assert record == {"whiten_images": 64, "whiten_eps": 5e-4}
    assert torch.equal(a.whiten.weight, b.whiten.weight) and torch.equal(a.whiten.bias, b.whiten.bias)
    assert not a.whiten.weight.requires_grad
    with torch.no_grad():
        out = a.whiten(x)[:, :12]  # the 12 + filters (the rest are their negations)
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(flat.T)
    assert torch.allclose(flat.mean(0), torch.zeros(12, dtype=torch.float64), atol=1e-3)
    # whitened: identity covariance up to the eps regularisation of the smallest directions
    assert torch.allclose(torch.diag(cov), torch.ones(12, dtype=torch.float64), atol=0.05)
    assert (cov - torch.diag(torch.diag(cov))).abs().max() < 0.05


def test_teacher_trains_with_the_whitening_recorded_in_its_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = {"teacher.arch": "test_airbench", "teacher.epochs": 1, "student.epochs": 1, "distill.baseline": "false"}
    distill(out=out, set=tiny_overrides(**sets))
    ckpt = load_checkpoint(out / "teacher.pt")
    assert ckpt["data_init"]["whiten_images"] > 100
    model, _ = load_model(out / "teacher.pt")
    assert torch.equal(model.whiten.weight, ckpt["state_dict"]["whiten.weight"])
    # a second run computes the same frozen whitening (data prefix, float64, eigh)
    out2 = tmp_path / "run2"
    distill(out=out2, set=tiny_overrides(**sets))
    assert torch.equal(
        load_checkpoint(out2 / "teacher.pt")["state_dict"]["whiten.weight"], ckpt["state_dict"]["whiten.weight"]
    )


def test_airbench_convs_start_as_identity_and_bn_learns_no_scale() -> None:
    """airbench's init: each conv's first filters pass their input through (dirac), and the
    BatchNorms train a bias only; ``dirac=False`` keeps PyTorch's random init."""
    torch.manual_seed(0)
    model = create_model("test_airbench", 10, 3, (32, 32))
    group = model.layers[1]  # 8 → 16 channels, then 16 → 16
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(group.conv1(x)[:, :8], x, atol=1e-6)
        y = torch.randn(2, 16, 6, 6)
        assert torch.allclose(group.conv2(y), y, atol=1e-6)  # square: the whole conv is the identity
    assert not group.bn1.weight.requires_grad and group.bn1.bias.requires_grad
    plain = create_model("test_airbench", 10, 3, (32, 32), dirac=False)
    with torch.no_grad():
        assert not torch.allclose(plain.layers[1].conv1(x)[:, :8], x, atol=1e-3)


def test_bias_lr_scale_multiplies_the_lr_of_bn_and_biases_only() -> None:
    from edgekd.config import load_config
    from edgekd.train.trainer import make_optimizer, set_lr

    cfg = load_config(None, tiny_overrides(**{"teacher.bias_lr_scale": 64}))
    model = create_model("test_airbench", 10, 3, (32, 32))
    optimizer = make_optimizer(cfg.teacher, [p for p in model.parameters() if p.requires_grad])
    set_lr(optimizer, 0.01)
    lrs = {len(g["params"][0].shape) > 1: g["lr"] for g in optimizer.param_groups}
    assert lrs == {True: 0.01, False: pytest.approx(0.64)}


@pytest.mark.parametrize("value", ["0", "-1", "1001", "nan"])
def test_bias_lr_scale_out_of_range_is_one_error(value: str) -> None:
    from edgekd.config import load_config

    with pytest.raises(EdgekdError, match="bias_lr_scale must be (in|a finite)"):
        load_config(None, tiny_overrides(**{"student.bias_lr_scale": value}))


def test_linear_schedule_and_lr_end() -> None:
    """airbench's schedule: linear warm-up, then a straight line down to lr_end (cosine honours it too)."""
    from edgekd.config import load_config
    from edgekd.train.trainer import lr_factor

    sets = {"student.epochs": 10, "student.warmup_epochs": 2, "student.lr_end": 0.07}
    linear = load_config(None, tiny_overrides(**sets, **{"student.schedule": "linear"})).student
    assert lr_factor(linear, 1.0) == pytest.approx(0.5, abs=1e-3)  # warm-up, unchanged
    assert lr_factor(linear, 2.0) == pytest.approx(1.0)
    assert lr_factor(linear, 6.0) == pytest.approx(0.07 + 0.93 * 0.5)  # halfway down, a straight line
    assert lr_factor(linear, 10.0) == pytest.approx(0.07)
    cosine = load_config(None, tiny_overrides(**sets)).student
    assert lr_factor(cosine, 10.0) == pytest.approx(0.07) and lr_factor(cosine, 6.0) == pytest.approx(0.535)
    plain = load_config(None, tiny_overrides(**{"student.epochs": 10})).student  # default lr_end 0: as before
    assert lr_factor(plain, 10.0) == pytest.approx(0.0) and lr_factor(plain, 5.0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("student.lr_end", "1.5", "student.lr_end must be"),
        ("teacher.lr_end", "-0.1", "teacher.lr_end must be"),
        ("student.lookahead_ramp", "-1", "student.lookahead_ramp must be"),
        ("student.lookahead_ramp", "nan", "student.lookahead_ramp must be"),
        ("data.crop_fill", "mirror", "data.crop_fill"),
        ("data.flip", "alternating", "data.flip"),
        ("student.warmup_start", "1.5", "student.warmup_start must be"),
        ("teacher.warmup_start", "-0.2", "teacher.warmup_start must be"),
        ("teacher.warmup_start", "nan", "teacher.warmup_start must be"),
    ],
)
def test_airbench_recipe_keys_out_of_range_are_one_error(key: str, value: str, fragment: str) -> None:
    from edgekd.config import load_config

    with pytest.raises(EdgekdError, match=fragment):
        load_config(None, tiny_overrides(**{key: value}))


def test_reflect_padding_as_wide_as_the_image_is_refused_before_training(tmp_path: Path) -> None:
    sets = {"data.augment": "crop", "data.crop_fill": "reflect", "data.crop_padding": 8}  # digits: 8×8
    with pytest.raises(
        EdgekdError, match="crop_padding 8 with data.crop_fill=reflect must be smaller than the images'"
    ):
        distill(out=tmp_path / "run", set=tiny_overrides(**sets))
    assert not (tmp_path / "run").exists()
    distill(out=tmp_path / "ok", set=tiny_overrides(**{**sets, "data.crop_padding": 2, "teacher.epochs": 1}))
    assert (tmp_path / "ok" / "summary.json").is_file()


def test_warmup_start() -> None:
    """airbench's warm-up starts at 0.2 of the lr, not at 0 (the default keeps the old line)."""
    from edgekd.config import load_config
    from edgekd.train.trainer import lr_factor

    sets = {"student.epochs": 10, "student.warmup_epochs": 2, "student.schedule": "linear"}
    warm = load_config(None, tiny_overrides(**sets, **{"student.warmup_start": 0.2})).student
    assert lr_factor(warm, 0.0) == pytest.approx(0.2, abs=1e-3)
    assert lr_factor(warm, 1.0) == pytest.approx(0.6, abs=1e-3) and lr_factor(warm, 2.0) == pytest.approx(1.0)
    plain = load_config(None, tiny_overrides(**sets)).student
    assert lr_factor(plain, 0.0) == pytest.approx(0.0, abs=1e-3)
    assert lr_factor(plain, 1.0) == pytest.approx(0.5, abs=1e-3)
