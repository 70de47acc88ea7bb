"""Train one model (a teacher, a KD student or a baseline) for its recipe, resumably and fast.

Every epoch ends with ``<name>_last.pt`` (weights + optimizer + history) and, when the val metric
(accuracy; mean IoU for segmentation, see :mod:`edgekd.tasks`) improved, ``<name>_best.pt``; both
are written atomically, by rank 0 only in a distributed run.
Randomness is derived from (seed, epoch), so a run resumed from ``<name>_last.pt`` continues
exactly as if it had never stopped (bit-identical on CPU). Test data is never looked at during
training: it is evaluated once, at the end.

The fast path: data on the device with augmentation there (:mod:`edgekd.data.loader`), autocast
(bf16/fp16 on CUDA), channels-last, the frozen teacher under no_grad (optionally compiled) or not
run at all when its outputs are cached (:mod:`edgekd.train.teacher_cache`), the student optionally
compiled, and DistributedDataParallel under torchrun (:mod:`edgekd.train.distributed`).
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
from edgekd.data import Dataset, Split
from edgekd.data.loader import Batches
from edgekd.errors import EdgekdError
from edgekd.models import count_macs, count_params
from edgekd.tasks import get_task
from edgekd.train import distributed
from edgekd.train.evaluate import evaluate
from edgekd.train.methods import DistillMethod
from edgekd.train.resume import Progress, restore
from edgekd.train.runtime import Runtime, autocast, for_models
from edgekd.ui import Timer, log, progress


class TrainingDiverged(EdgekdError):
    """The loss turned NaN or infinite: the weights are no longer numbers worth keeping."""

    exit_code = 1  # the run's input was valid; one of its steps failed


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
    batch_size: int = 128  # the global batch: split evenly over the processes of a distributed run
    eval_batch_size: int = 512
    views: int | None = None  # data.views: a fixed set of augmented views
    view_seed: int | None = None  # data.view_seed: the augmentation's seed; None: the stage's seed
    workers: int = 2  # DataLoader workers for streamed images
    # the teacher-output cache file's stem; None: ``name``. The QAT stage reads the float student's
    # (same teacher, data and views: the same key) instead of computing it again
    cache_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the checkpoint (e.g. KD settings)


def data_settings(data: Any) -> dict[str, Any]:
    """The ``Stage`` fields that come from the config's ``data`` section: every stage built from a
    config passes them the same way, so a new data key is wired in one place."""
    return {
        "batch_size": data.batch_size,
        "eval_batch_size": data.eval_batch_size,
        "views": data.views,
        "view_seed": data.view_seed,
        "workers": data.workers,
    }


class StudentStep(nn.Module):
    """The trained computation — student forward and the method's loss — as one module, so that
    DistributedDataParallel sees every trainable parameter: the student's and the method's own
    (a FitNets regressor), whose hooks fire inside this forward."""

    def __init__(self, student: nn.Module, method: DistillMethod, forward_model: nn.Module | None = None) -> None:
        super().__init__()
        self.student = student
        self.method = method
        # the compiled student, when compiled: same parameters, kept out of the module tree
        object.__setattr__(self, "_forward", forward_model)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, teacher_out: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s_out = (self._forward if self._forward is not None else self.student)(x)
        return s_out, self.method(s_out, teacher_out, y)


def lr_factor(recipe: StageConfig, progress_epochs: float) -> float:
    """Multiplier of the base lr at a fractional epoch (schedules are stepped every iteration)."""
    warm = recipe.warmup_epochs
    if warm and progress_epochs < warm:
        return recipe.warmup_start + (1.0 - recipe.warmup_start) * (progress_epochs + 1e-3) / warm
    if recipe.schedule in ("cosine", "linear"):
        done = min(1.0, (progress_epochs - warm) / max(recipe.epochs - warm, 1e-9))
        down = 0.5 * (1.0 + math.cos(math.pi * done)) if recipe.schedule == "cosine" else 1.0 - done
        return recipe.lr_end + (1.0 - recipe.lr_end) * down
    if recipe.schedule == "step":
        return recipe.gamma ** sum(1 for m in recipe.milestones if progress_epochs >= m)
    return 1.0


def make_optimizer(recipe: StageConfig, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    # no weight decay on BN/bias (1-D) parameters: the usual CIFAR recipe, and decaying BN scales
    # only fights the normalisation
    # a folded first conv under AdamW (edgekd.models.fold.unfolded_steps): Adam's steps do not
    # scale with the gradient, so its pace is set here instead, lr × scale with the decay ÷ scale
    folded = [p for p in params if getattr(p, "fold_scale", None) is not None] if recipe.optimizer == "adamw" else []
    rest = [p for p in params if not any(p is f for f in folded)]
    decay = [p for p in rest if p.ndim > 1]
    no_decay = [p for p in rest if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": recipe.bias_lr_scale},
    ]
    for p in folded:
        scale = float(p.fold_scale.mean())  # per input channel; CIFAR-10's stds are within 4 % of their mean
        groups.append({"params": [p], "weight_decay": recipe.weight_decay / scale, "lr_scale": scale})
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    return torch.optim.SGD(
        groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov and recipe.momentum > 0
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's lr on every group, times the group's ``lr_scale`` (bias_lr_scale for BN and
    biases; groups without one, e.g. from an older checkpoint's optimizer state, take lr as is)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def eval_batches(split: Split, data: Dataset, batch_size: int, rt: Runtime) -> Batches:
    """Batches for evaluation: this process's share of the split (all of it on one process)."""
    return Batches(
        split, data.mean, data.std, batch_size, rt.device, shard=rt.world.shard, channels_last=rt.channels_last
    )


def _prepare_teacher(stage: Stage, rt: Runtime) -> nn.Module | None:
    if stage.teacher is None:
        return None
    teacher = stage.teacher.to(rt.device).eval()
    if rt.channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    if rt.compile_teacher and not stage.method.reads_teacher_features:
        teacher = torch.compile(teacher)  # hooks on a compiled teacher's layers would not see its features
    return teacher


def train_stage(
    stage: Stage,
    model: nn.Module,
    data: Dataset,
    out_dir: Path,
    rt: Runtime,
    seed: int,
    select: str = "best_val",
    resume: bool = False,
    on_epoch: Sequence[EpochCallback] = (),
) -> dict[str, Any]:
    """Train ``model`` and return its result record (val/test metrics, params, MACs, wall time)."""
    recipe, method = stage.recipe, stage.method
    task = get_task(data.task)
    data_info = data.describe()
    model.to(rt.device)
    teacher_model = None if stage.teacher is None else stage.teacher.to(rt.device)
    rt = for_models(rt, [(stage.name, model), ("teacher", teacher_model)], (1, data.in_channels, *data.image_size))
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    method.to(rt.device)
    teacher = _prepare_teacher(stage, rt)
    method.attach(model, teacher, (1, data.in_channels, *data.image_size))

    distributed.check_batch(stage.batch_size)
    mix = mix_options(recipe, data)
    # the views' seed, apart from the student's: with data.view_seed every seed (and every student)
    # sees the same views, so the cached teacher outputs below are computed once for all of them
    view_seed = seed if stage.view_seed is None else stage.view_seed
    train = Batches(
        data.train,
        data.mean,
        data.std,
        stage.batch_size,
        rt.device,
        **data.augmentation,
        shuffle=True,
        seed=seed,
        drop_last=True,
        views=stage.views,
        shard=rt.world.shard,
        workers=stage.workers,
        channels_last=rt.channels_last,
        view_seed=view_seed,
        **mix,
    )
    val = eval_batches(data.val, data, stage.eval_batch_size, rt)
    cached = None
    if teacher is not None and rt.teacher_cache and not method.reads_teacher_features:
        from edgekd.train.teacher_cache import teacher_outputs, views_of

        views = views_of(data, stage.views, mixing=bool(mix))
        if views is not None:
            cached = teacher_outputs(
                teacher,
                data,
                views,
                view_seed,
                rt,
                out_dir,
                stage.cache_name or stage.name,
                stage.eval_batch_size,
                mix=mix,
            )
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = make_optimizer(recipe, params)
    lookahead = None
    if recipe.lookahead_steps:
        from edgekd.train.lookahead import Lookahead

        total = recipe.epochs * len(train)
        stats = [b for b in model.buffers() if b.is_floating_point()]  # BatchNorm's running statistics
        lookahead = Lookahead(
            optimizer, params, recipe.lookahead_steps, recipe.lookahead_alpha, recipe.lookahead_ramp, total, stats
        )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp is torch.float16)
    step = StudentStep(model, method, torch.compile(model) if rt.compile_student else None)
    step = distributed.wrap(step, rt.device, find_unused=not method.all_params_used)

    last_path, best_path = out_dir / f"{stage.name}_last.pt", out_dir / f"{stage.name}_best.pt"
    done = Progress()  # a stage that starts from scratch
    if resume and last_path.is_file():
        done = restore(last_path, recipe.epochs, model, method, optimizer, scaler, lookahead)
        log(f"{stage.name}: resuming after epoch {done.epoch}/{recipe.epochs}")
    start_epoch, wall, hist = done.epoch, done.wall_s, done.history
    best_val, best_epoch = done.best_val, done.best_epoch

    def payload(**extra: Any) -> dict[str, Any]:
        return model_payload(model, stage.arch, stage.kwargs, data_info, stage.name, **stage.extra, **extra)

    for epoch in range(start_epoch, recipe.epochs):
        timer = Timer()
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout etc.: same stream for an epoch, resumed or not
        train.set_epoch(epoch)
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(rt.device)
        record = _train_epoch(stage, step, teacher, cached, train, optimizer, scaler, rt, epoch, task)
        if lookahead is not None:
            lookahead.sync()  # the slow weights are evaluated, saved and trained on from
        train_s = timer.elapsed
        v = evaluate(tta(model, recipe), val, rt.amp, task)
        if not math.isfinite(v.loss):  # finite training loss, NaN outputs on val: the weights are as broken
            _stop_if_diverged(stage, epoch, len(train) - 1, len(train), where="validation loss")
        record.update(val_loss=round(v.loss, 6), **prefixed("val", v))
        record["train_s"] = round(train_s, 3)
        record["time_s"] = round(timer.elapsed, 3)
        record["img_per_s"] = round(train.num_samples * rt.world.size / max(train_s, 1e-9), 1)
        if rt.device.type == "cuda":
            record["gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(rt.device) / 2**20, 1)
        wall += timer.elapsed
        hist.append(record)
        if v.score > best_val:
            best_val, best_epoch = v.score, epoch + 1
            save_checkpoint(best_path, payload(epoch=epoch + 1, metrics=prefixed("val", v, digits=None)))
        train_state = {
            "optimizer": optimizer.state_dict(),
            "method": method.state_dict(),
            "scaler": scaler.state_dict(),
            **({"lookahead": lookahead.state_dict()} if lookahead is not None else {}),
            "epoch": epoch + 1,
            "best_val": best_val,
            "best_epoch": best_epoch,
            "wall_s": wall,
            "history": hist,
        }
        save_checkpoint(
            last_path, payload(epoch=epoch + 1, metrics=prefixed("val", v, digits=None), train_state=train_state)
        )
        log(
            f"{stage.name} epoch {epoch + 1}/{recipe.epochs}  loss {record['loss']:.4f}  train "
            f"{record['train_acc']:.4f}"
            f"  val {task.format_metrics(v.metrics)}  lr {record['lr']:.4g}  {record['time_s']:.1f}s  "
            f"{record['img_per_s']:.0f} img/s" + (f"  {record['gpu_mem_mb']:.0f} MB" if "gpu_mem_mb" in record else "")
        )
        for callback in on_epoch:
            callback(record, hist)
    method.detach()
    distributed.barrier()  # every rank sees the last checkpoints before reading them back
    return finish_stage(stage, model, data, out_dir, rt, select, best_epoch, wall, len(hist))


def tta(model: nn.Module, recipe: StageConfig) -> nn.Module:
    """``model`` wrapped in flip TTA (and translation TTA, ``recipe.tta_translate``) for evaluation
    when ``recipe.tta_flip``."""
    if not recipe.tta_flip:
        return model
    from edgekd.models.wrappers import FlipTTA

    return FlipTTA(model, translate=recipe.tta_translate)


def mix_options(recipe: StageConfig, data: Dataset) -> dict[str, Any]:
    """The Batches keywords for the stage's mixup/cutmix ({} when off); refused where mixing means
    nothing (masks) or cannot be done per sample from memory (streamed images)."""
    if not (recipe.mixup or recipe.cutmix):
        return {}
    from edgekd.errors import ConfigError

    if data.task != "classification" or data.train.lazy:
        raise ConfigError(
            "config: mixup/cutmix need a classification dataset held in memory (not masks, not data.storage=stream)"
        )
    return {"mixup": recipe.mixup, "cutmix": recipe.cutmix, "num_classes": data.num_classes}


def prefixed(prefix: str, result, digits: int | None = 6) -> dict[str, float]:
    """``{prefix_acc: …}`` (and ``prefix_iou`` for segmentation) from an :class:`EvalResult`."""
    return {f"{prefix}_{k}": (round(v, digits) if digits is not None else v) for k, v in result.metrics.items()}


def _train_epoch(stage, step, teacher, cached, batches, optimizer, scaler, rt: Runtime, epoch, task) -> dict[str, Any]:
    step.train()
    recipe = stage.recipe
    device = rt.device
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device, dtype=torch.long)
    labeled = torch.zeros(
        (), device=device, dtype=torch.long
    )  # samples (pixels) counted: label -1 (transfer set, target domain) is not
    seen = torch.zeros((), device=device, dtype=torch.long)
    shown = 0
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first step whose loss was not finite
    steps = len(batches)
    lr = recipe.lr
    view = cached[batches.view % len(cached)] if cached is not None else None
    with progress(f"{stage.name} {epoch + 1}/{recipe.epochs}", steps) as bar:
        for i, (idx, x, y) in enumerate(batches.with_index()):
            lr = recipe.lr * lr_factor(recipe, epoch + i / steps)
            set_lr(optimizer, lr)
            with autocast(rt.amp, device):
                if view is not None:
                    t_out = view[idx]
                elif teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                else:
                    t_out = None
                s_out, parts = step(x, y, t_out)
            # recorded on the device (no sync per step), read where the progress bar syncs anyway
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(parts["loss"].detach()), i, first_bad)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            b = y.shape[0]
            seen += b
            for k, v in parts.items():
                sums[k] = sums.get(k, 0) + v.detach().float() * b
            y_cls = y.argmax(1) if y.is_floating_point() and y.dim() == 2 else y  # mixed: the dominant class
            right, counted = task.train_counts(s_out, y_cls)  # per sample, or per pixel for masks
            correct += right
            labeled += counted
            if i % 10 == 9 or i == steps - 1:  # .item() syncs the device: not every step
                _stop_if_diverged(stage, epoch, int(distributed.all_max(first_bad)), steps)
                bar.update(
                    i + 1 - shown, loss=(sums["loss"] / seen).item(), acc=correct.item() / max(labeled.item(), 1)
                )
                shown = i + 1
    # one all-reduce for every metric: sums over the ranks' shares of the epoch
    names = sorted(sums)
    totals = distributed.all_sum(
        torch.stack([*(sums[k] for k in names), correct.float(), labeled.float(), seen.float()])
    )
    *parts_sum, correct_t, labeled_t, seen_t = totals.tolist()
    record: dict[str, Any] = {"stage": stage.name, "epoch": epoch + 1, "lr": round(lr, 8)}
    for k, v in zip(names, parts_sum):
        record[k] = round(v / max(seen_t, 1), 6)
    record["train_acc"] = round(correct_t / max(labeled_t, 1), 6)
    return record


def _stop_if_diverged(stage: Stage, epoch: int, bad_step: int, steps: int, where: str = "loss") -> None:
    """Stop the run at a non-finite loss: the checkpoints on disk are from the last finished epoch,
    and nothing of this epoch is written."""
    if bad_step < 0:
        return
    kept = f"{stage.name}_last.pt (epoch {epoch}) is kept" if epoch else "no checkpoint of this stage was written"
    raise TrainingDiverged(
        f"{stage.name}: the {where} became NaN or infinite at epoch {epoch + 1}, step {bad_step + 1} of {steps}; "
        f"training stopped and {kept}. Lower {stage.name}'s lr (now {stage.recipe.lr:g}) or check the data and the KD "
        "settings"
    )


def finish_stage(stage, model, data, out_dir, rt: Runtime, select, best_epoch, wall, epochs_run) -> dict[str, Any]:
    """Pick the weights (best on val or last), evaluate on test once, write ``<name>.pt``."""
    task = get_task(data.task)
    test = eval_batches(data.test, data, stage.eval_batch_size, rt)
    val = eval_batches(data.val, data, stage.eval_batch_size, rt)
    scored = tta(model, stage.recipe)  # the same weights, evaluated with flip TTA when the recipe asks
    last_test = evaluate(scored, test, rt.amp, task)
    last_val = evaluate(scored, val, rt.amp, task)
    chosen_epoch = epochs_run
    if select == "best_val" and best_epoch > 0 and best_epoch != epochs_run:
        best_path = out_dir / f"{stage.name}_best.pt"
        load_weights(model, load_checkpoint(best_path)["state_dict"], best_path)
        chosen_epoch = best_epoch
    v = evaluate(scored, val, rt.amp, task) if chosen_epoch != epochs_run else last_val
    t = evaluate(scored, test, rt.amp, task) if chosen_epoch != epochs_run else last_test
    c, (h, w) = data.in_channels, data.image_size
    result = {
        "arch": stage.arch,
        "params": count_params(model),
        "macs": count_macs(model, (1, c, h, w)),
        **interleaved(prefixed("val", v), prefixed("test", t)),
        "epoch": chosen_epoch,
        **interleaved(prefixed("last_val", last_val), prefixed("last_test", last_test)),
        "epochs": epochs_run,
        "wall_s": round(wall, 2),
        "checkpoint": f"{stage.name}.pt",
    }
    save_checkpoint(
        out_dir / f"{stage.name}.pt",
        model_payload(
            model,
            stage.arch,
            stage.kwargs,
            data.describe(),
            stage.name,
            epoch=chosen_epoch,
            metrics=result,
            complete=True,
            **stage.extra,
        ),
    )
    distributed.barrier()  # other ranks may load <name>.pt next
    return result


def interleaved(val: dict[str, float], test: dict[str, float]) -> dict[str, float]:
    """val_acc, test_acc (then val_iou, test_iou …): the classification record's key order, kept."""
    out: dict[str, float] = {}
    for (kv, vv), (kt, vt) in zip(val.items(), test.items()):
        out[kv], out[kt] = vv, vt
    return out
