"""Lookahead: the slow/fast update by hand, and an exact resume of a run that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from edgekd.checkpoint import load_checkpoint
from edgekd.errors import ConfigError
from edgekd.train.lookahead import Lookahead
from edgekd.train.run import distill


def test_every_k_steps_the_slow_weights_move_alpha_towards_the_fast_ones() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    la = Lookahead(opt, [w], k=2, alpha=0.5)
    for _ in range(2):  # gradient of w² is 2w: w ← w − 0.2·w
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    fast = 1.0 * 0.8 * 0.8
    assert w.item() == pytest.approx(1.0 + 0.5 * (fast - 1.0))  # θ ← φ ← φ + α(θ − φ)
    assert la.slow[0].item() == pytest.approx(w.item()) and la.steps == 2
    opt.zero_grad()
    (w * w).sum().backward()
    opt.step()  # step 3: no sync
    assert la.slow[0].item() == pytest.approx(0.82) and w.item() == pytest.approx(0.82 * 0.8)


def test_run_with_lookahead_resumes_exactly(tmp_path: Path) -> None:
    sets = {"student.lookahead_steps": 3, "distill.baseline": "false", "teacher.epochs": 1}
    ref = tmp_path / "ref"
    distill(out=ref, set=tiny_overrides(**sets))
    state = load_checkpoint(ref / "student_last.pt")["train_state"]
    assert state["lookahead"]["steps"] > 0

    out = tmp_path / "interrupted"
    _interrupt_after_the_students_first_epoch(out, sets)
    distill(out=out, resume=True)
    a, b = (
        load_checkpoint(out / "student_last.pt")["state_dict"],
        load_checkpoint(ref / "student_last.pt")["state_dict"],
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and it changes training: without lookahead the weights differ
    plain = tmp_path / "plain"
    distill(out=plain, set=tiny_overrides(**{**sets, "student.lookahead_steps": 0}))
    c = load_checkpoint(plain / "student_last.pt")["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bad_lookahead_settings_are_refused() -> None:
    from edgekd.config import load_config

    with pytest.raises(ConfigError, match="lookahead_alpha in"):
        load_config(None, tiny_overrides(**{"student.lookahead_alpha": 0}))


def test_ramp_starts_without_averaging_and_ends_at_alpha() -> None:
    """airbench's schedule: α_t = 1 − (1 − α)·(t/T)^p, its EMA decay 0.95⁵·(t/T)³ when α = 1 − 0.95⁵."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    alpha = 1 - 0.95**5
    la = Lookahead(opt, [w], k=5, alpha=alpha, ramp=3.0, total_steps=100)
    assert la.alpha_at(0) == 1.0 and la.alpha_at(100) == pytest.approx(alpha)
    assert la.alpha_at(50) == pytest.approx(1 - 0.95**5 * 0.5**3)
    assert la.alpha_at(400) == pytest.approx(alpha)  # past the end: held
    assert Lookahead(opt, [w], k=5, alpha=0.5).alpha_at(3) == 0.5  # no ramp: constant
    with pytest.raises(ValueError, match="total steps"):
        Lookahead(opt, [w], k=5, alpha=0.5, ramp=3.0)


def test_sync_gives_the_model_the_slow_weights() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    la = Lookahead(opt, [w], k=5, alpha=0.5)
    for _ in range(2):  # two fast steps, no slow update yet
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    assert w.item() == pytest.approx(0.64) and la.slow[0].item() == 1.0
    la.sync()
    assert w.item() == 1.0


def test_a_run_with_lookahead_saves_the_slow_weights(tmp_path: Path) -> None:
    """At each epoch's end the model takes the slow weights: they are evaluated and saved."""
    sets = {"student.lookahead_steps": 7, "student.lookahead_ramp": 2, "distill.baseline": "false", "teacher.epochs": 1}
    distill(out=tmp_path / "run", set=tiny_overrides(**sets))
    ckpt = load_checkpoint(tmp_path / "run" / "student_last.pt")
    slow, names = ckpt["train_state"]["lookahead"]["slow"], ckpt["state_dict"]
    assert ckpt["train_state"]["lookahead"]["steps"] % 7  # the epoch did not end on a slow update
    trained = [t for k, t in names.items() if t.is_floating_point() and "running" not in k and "num_batches" not in k]
    stats = [t for k, t in names.items() if "running" in k]  # BatchNorm's statistics: averaged too, after the weights
    assert stats and len(trained) + len(stats) == len(slow)
    assert all(torch.equal(a, b) for a, b in zip(trained + stats, slow))


def test_buffers_are_averaged_with_the_weights() -> None:
    """BatchNorm's running statistics follow the slow weights (airbench's EMA of the whole state):
    a buffer changed by the fast steps moves α of the way, like a weight."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    stat = torch.tensor([0.0])
    opt = torch.optim.SGD([w], lr=0.1)
    la = Lookahead(opt, [w], k=2, alpha=0.25, buffers=[stat])
    for _ in range(2):
        stat += 4.0  # what a forward pass in train mode does to running_mean
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    assert stat.item() == pytest.approx(0.25 * 8.0) and la.slow[1].item() == pytest.approx(2.0)
    stat.fill_(-1.0)
    la.sync()
    assert stat.item() == pytest.approx(2.0)


def test_a_lookahead_state_of_the_weights_alone_still_resumes() -> None:
    """A run saved before the buffers were averaged: its slow weights load, the buffers' slow copies
    start from the model's buffers."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    stat = torch.tensor([3.0])
    opt = torch.optim.SGD([w], lr=0.1)
    la = Lookahead(opt, [w], k=2, alpha=0.5, buffers=[stat])
    la.load_state_dict({"steps": 4, "slow": [torch.tensor([0.5])]})
    assert la.steps == 4 and la.slow[0].item() == 0.5 and la.slow[1].item() == 3.0


def test_a_run_saved_with_the_weights_slow_copies_alone_resumes(tmp_path: Path) -> None:
    """student_last.pt of an older edgekd (Lookahead's slow copies of the weights, none of the BN
    statistics) resumes; slow copies of any other count are refused as before."""
    from edgekd.checkpoint import save_checkpoint

    sets = {"student.lookahead_steps": 3, "distill.baseline": "false", "teacher.epochs": 1, "student.epochs": 2}

    out = tmp_path / "run"
    _interrupt_after_the_students_first_epoch(out, sets)
    last = out / "student_last.pt"
    ckpt = load_checkpoint(last)
    n_weights = sum(1 for k, t in ckpt["state_dict"].items() if t.is_floating_point() and "running" not in k)
    ckpt["train_state"]["lookahead"]["slow"] = ckpt["train_state"]["lookahead"]["slow"][:n_weights]
    save_checkpoint(last, ckpt)
    distill(out=out, resume=True)
    assert load_checkpoint(last)["epoch"] == 2


def _interrupt_after_the_students_first_epoch(out: Path, sets: dict) -> None:
    """A tiny distill into ``out`` stopped (as by Ctrl-C) once the student's first epoch is saved."""

    def stop(record: dict, history: list) -> None:
        if record["stage"] == "student" and record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(out=out, set=tiny_overrides(**sets), on_epoch=[stop])
