"""Train one model (a teacher, a KD student or a baseline) for its recipe, resumably.

Every epoch ends with ``<name>_last.pt`` (weights + optimizer + history) and, when val accuracy
improved, ``<name>_best.pt``; both are written atomically. Randomness is derived from (seed, epoch),
so a run resumed from ``<name>_last.pt`` continues exactly as if it had never stopped (bit-identical
on CPU). Test data is never looked at during training: it is evaluated once, at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.checkpoint import load_checkpoint, load_weights, model_payload, save_checkpoint
from edgekd.config import StageConfig
from edgekd.data import Dataset
from edgekd.data.loader import Batches
from edgekd.train.evaluate import evaluate
from edgekd.train.methods import DistillMethod
from edgekd.train.runtime import autocast
from edgekd.errors import CheckpointError
from edgekd.models import count_macs, count_params
from edgekd.ui import Timer, log, progress

# called after every epoch with (this epoch's record, the stage's whole history so far)
EpochCallback = Callable[[dict[str, Any], list[dict[str, Any]]], None]


@dataclass
class Stage:
    """What to train: a named model, its recipe and how its loss is computed."""

    name: str  # file stem and log label: teacher | student | baseline | …
    arch: str
    kwargs: dict[str, Any]
    recipe: StageConfig
    method: DistillMethod
    teacher: nn.Module | None = None  # frozen, eval mode; None when method.needs_teacher is False
    batch_size: int = 128
    eval_batch_size: int = 512
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the checkpoint (e.g. KD settings)


def lr_factor(recipe: StageConfig, progress_epochs: float) -> float:
    """Multiplier of the base lr at a fractional epoch (schedules are stepped every iteration)."""
    warm = recipe.warmup_epochs
    if warm and progress_epochs < warm:
        return (progress_epochs + 1e-3) / warm
    if recipe.schedule == "cosine":
        span = max(recipe.epochs - warm, 1e-9)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress_epochs - warm) / span)))
    if recipe.schedule == "step":
        return recipe.gamma ** sum(1 for m in recipe.milestones if progress_epochs >= m)
    return 1.0


def make_optimizer(recipe: StageConfig, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    # no weight decay on BN/bias (1-D) parameters: the usual CIFAR recipe, and decaying BN scales
    # only fights the normalisation
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov and recipe.momentum > 0)


def train_stage(
    stage: Stage,
    model: nn.Module,
    data: Dataset,
    out_dir: Path,
    device: torch.device,
    amp: torch.dtype | None,
    seed: int,
    select: str = "best_val",
    resume: bool = False,
    on_epoch: Sequence[EpochCallback] = (),
) -> dict[str, Any]:
    """Train ``model`` and return its result record (val/test accuracy, params, MACs, wall time)."""
    recipe, method = stage.recipe, stage.method
    data_info = data.describe()
    model.to(device)
    method.to(device)
    teacher = stage.teacher.to(device).eval() if stage.teacher is not None else None
    method.attach(model, teacher, (1, data.in_channels, *data.image_size))

    train = Batches(data.train, data.mean, data.std, stage.batch_size, device, data.augment, data.crop_padding, shuffle=True, seed=seed, drop_last=True)
    val = Batches(data.val, data.mean, data.std, stage.eval_batch_size, device)
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = make_optimizer(recipe, params)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    last_path, best_path = out_dir / f"{stage.name}_last.pt", out_dir / f"{stage.name}_best.pt"
    start_epoch, best_val, best_epoch, wall, hist = 0, -1.0, -1, 0.0, []
    if resume and last_path.is_file():
        last = load_checkpoint(last_path)
        state = last.get("train_state")
        if state is None:
            raise CheckpointError(f"{last_path} has no training state to resume from")
        load_weights(model, last["state_dict"], last_path)
        optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_val, best_epoch = state["epoch"], state["best_val"], state["best_epoch"]
        wall, hist = state["wall_s"], list(state["history"])
        log(f"{stage.name}: resuming after epoch {start_epoch}/{recipe.epochs}")

    def payload(**extra: Any) -> dict[str, Any]:
        return model_payload(model, stage.arch, stage.kwargs, data_info, stage.name, **stage.extra, **extra)

    for epoch in range(start_epoch, recipe.epochs):
        timer = Timer()
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout etc.: same stream for an epoch, resumed or not
        train.set_epoch(epoch)
        record = _train_epoch(stage, model, teacher, method, train, optimizer, scaler, device, amp, epoch)
        v = evaluate(model, val, amp)
        record.update(val_loss=round(v.loss, 6), val_acc=round(v.acc, 6))
        record["time_s"] = round(timer.elapsed, 3)
        record["img_per_s"] = round(train.num_samples / max(timer.elapsed, 1e-9), 1)
        wall += timer.elapsed
        hist.append(record)
        if v.acc > best_val:
            best_val, best_epoch = v.acc, epoch + 1
            save_checkpoint(best_path, payload(epoch=epoch + 1, metrics={"val_acc": v.acc}))
        train_state = {
            "optimizer": optimizer.state_dict(),
            "method": method.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch + 1,
            "best_val": best_val,
            "best_epoch": best_epoch,
            "wall_s": wall,
            "history": hist,
        }
        save_checkpoint(last_path, payload(epoch=epoch + 1, metrics={"val_acc": v.acc}, train_state=train_state))
        log(
            f"{stage.name} epoch {epoch + 1}/{recipe.epochs}  loss {record['loss']:.4f}  train {record['train_acc']:.4f}"
            f"  val {v.acc:.4f}  lr {record['lr']:.4g}  {record['time_s']:.1f}s"
        )
        for callback in on_epoch:
            callback(record, hist)
    method.detach()
    return finish_stage(stage, model, data, out_dir, device, amp, select, best_epoch, best_val, wall, len(hist))


def _train_epoch(stage, model, teacher, method, batches, optimizer, scaler, device, amp, epoch) -> dict[str, Any]:
    model.train()
    method.train()
    recipe = stage.recipe
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device, dtype=torch.long)
    labeled = torch.zeros((), device=device, dtype=torch.long)  # label -1 (transfer set, target domain): no accuracy
    seen, shown = 0, 0
    steps = len(batches)
    with progress(f"{stage.name} {epoch + 1}/{recipe.epochs}", steps) as bar:
        for i, (x, y) in enumerate(batches):
            lr = recipe.lr * lr_factor(recipe, epoch + i / steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(amp, device):
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                s_out = model(x)
                parts = method(s_out, t_out, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            b = y.shape[0]
            seen += b
            for k, v in parts.items():
                sums[k] = sums.get(k, 0) + v.detach().float() * b
            correct += (s_out.detach().argmax(1) == y).sum()  # -1 never equals a class index
            labeled += (y >= 0).sum()
            if i % 10 == 9 or i == steps - 1:  # .item() syncs the device: not every step
                bar.update(i + 1 - shown, loss=(sums["loss"] / seen).item(), acc=correct.item() / max(labeled.item(), 1))
                shown = i + 1
    record: dict[str, Any] = {"stage": stage.name, "epoch": epoch + 1, "lr": round(lr, 8)}
    for k, v in sums.items():
        record[k] = round(float(v) / max(seen, 1), 6)
    record["train_acc"] = round(correct.item() / max(labeled.item(), 1), 6)
    return record


def finish_stage(stage, model, data, out_dir, device, amp, select, best_epoch, best_val, wall, epochs_run) -> dict[str, Any]:
    """Pick the weights (best on val or last), evaluate on test once, write ``<name>.pt``."""
    test = Batches(data.test, data.mean, data.std, stage.eval_batch_size, device)
    val = Batches(data.val, data.mean, data.std, stage.eval_batch_size, device)
    last_test = evaluate(model, test, amp)
    last_val = evaluate(model, val, amp)
    chosen_epoch = epochs_run
    if select == "best_val" and best_epoch > 0 and best_epoch != epochs_run:
        best_path = out_dir / f"{stage.name}_best.pt"
        load_weights(model, load_checkpoint(best_path)["state_dict"], best_path)
        chosen_epoch = best_epoch
    v = evaluate(model, val, amp) if chosen_epoch != epochs_run else last_val
    t = evaluate(model, test, amp) if chosen_epoch != epochs_run else last_test
    c, (h, w) = data.in_channels, data.image_size
    result = {
        "arch": stage.arch,
        "params": count_params(model),
        "macs": count_macs(model, (1, c, h, w)),
        "val_acc": round(v.acc, 6),
        "test_acc": round(t.acc, 6),
        "epoch": chosen_epoch,
        "last_val_acc": round(last_val.acc, 6),
        "last_test_acc": round(last_test.acc, 6),
        "epochs": epochs_run,
        "wall_s": round(wall, 2),
        "checkpoint": f"{stage.name}.pt",
    }
    save_checkpoint(
        out_dir / f"{stage.name}.pt",
        model_payload(model, stage.arch, stage.kwargs, data.describe(), stage.name, epoch=chosen_epoch, metrics=result, complete=True, **stage.extra),
    )
    return result
