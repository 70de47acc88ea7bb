"""Training one named stage (a student, a baseline, a TA, an ensemble member, a teacher) with a
KD method, resumable. A mixin of :class:`edgekd.train.context.RunContext`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.config import StageConfig
from edgekd.tasks import get_task
from edgekd.ui import log


class StudentStages:
    """``train``, ``own_input``, ``baseline``, ``task_method``: they use the context's ``cfg``, ``data``, ``rt``,
    ``out_dir``, ``resume``, ``on_epoch``, ``wall`` and ``done``."""

    def train(
        self,
        name: str,
        recipe: StageConfig,
        method: Any,
        teacher,
        *,
        data=None,
        seed: int | None = None,
        init: str | Path | None = None,
        select: str | None = None,
        method_name: str | None = None,
    ) -> dict[str, Any]:
        """Train stage ``name``, or return its record when a resumed run already finished it.

        ``method`` is a registry name or a built :class:`DistillMethod` (``method_name`` is then
        what the checkpoint records); ``data`` the training data (default: the run's); ``init``
        a checkpoint whose weights start the model (default: ``recipe.checkpoint``, students only).
        """
        import torch

        from edgekd.models import create_model
        from edgekd.train.methods import build_method
        from edgekd.train.trainer import Stage, data_settings, train_stage

        done = self.done(name)
        if done is not None:
            self.wall[name] = done["metrics"]["wall_s"]
            return done["metrics"]
        cfg, d = self.cfg, data or self.data
        if not name.startswith("teacher"):  # a teacher trained here learns with the data's statistics
            d, teacher = self.own_input(recipe, d, teacher, name)
        seed = cfg.seed if seed is None else seed
        if isinstance(method, str):
            method_name, method = method, build_method(method, cfg.distill, recipe)
        torch.manual_seed(seed)  # student and baseline start from identical weights
        model = create_model(recipe.arch, d.num_classes, d.in_channels, d.image_size, **recipe.kwargs)
        check_output(model, d, recipe.arch)
        if recipe.bn_momentum is not None:
            from edgekd.models.layers import set_bn_momentum

            if not set_bn_momentum(model, recipe.bn_momentum):
                log(f"{name}: {recipe.arch} has no BatchNorm layer: bn_momentum {recipe.bn_momentum} changes nothing")
        if init is None and recipe.checkpoint and not name.startswith("teacher"):
            init = recipe.checkpoint
        if init:
            from edgekd.checkpoint import check_compatible, load_checkpoint, load_weights

            ckpt = load_checkpoint(init)
            if ckpt["format"] != "state_dict":
                check_compatible(ckpt, d.describe(), init)
            load_weights(model, ckpt["state_dict"], init)
        extra: dict[str, Any] = {"method": method_name}
        if not init and hasattr(model, "data_init"):  # e.g. airbench's whitening layer, set from patch statistics
            extra["data_init"] = data_init(model, d)
        if method.needs_teacher:
            extra["distill"] = {
                "temperature": cfg.distill.temperature,
                "alpha": getattr(method, "alpha", cfg.distill.alpha),
            }
        stage = Stage(
            name=name,
            arch=recipe.arch,
            kwargs=dict(recipe.kwargs),
            recipe=recipe,
            method=method,
            teacher=teacher if method.needs_teacher else None,
            **data_settings(cfg.data),
            extra=extra,
        )
        log(f"{name}: {recipe.arch} with {method_name} for {recipe.epochs} epochs")
        result = train_stage(
            stage, model, d, self.out_dir, self.rt, seed, select or cfg.distill.select, self.resume, self.on_epoch
        )
        self.wall[name] = result["wall_s"]
        return result

    @staticmethod
    def own_input(recipe: StageConfig, data, teacher=None, name: str = "student"):
        """(``data`` normalized as ``recipe``'s model expects, ``teacher`` fed those batches).

        A student with statistics of its own (``student.mean``/``std``: say a torchvision model
        pretrained on ImageNet) learns from batches normalized with them, so that its checkpoint
        records them and every bundle file made from it folds them in; the teacher, frozen for
        ``data``'s batches, gets them re-normalized back (:class:`edgekd.train.teachers.Renormalized`,
        the wrapper of a teacher with statistics of its own). The one place that does this for
        every student-side stage (student, baseline, FitNets hint, QAT)."""
        import dataclasses

        from edgekd.errors import ConfigError
        from edgekd.train.teachers import Renormalized

        if recipe.mean is None or recipe.std is None:
            return data, teacher
        own_mean, own_std = tuple(recipe.mean), tuple(recipe.std)
        if len(own_mean) != data.in_channels:
            raise ConfigError(
                f"config: student.mean has {len(own_mean)} values, the data {data.in_channels} channel(s)"
            )
        if (own_mean, own_std) == (tuple(data.mean), tuple(data.std)):
            return data, teacher
        own = dataclasses.replace(data, mean=own_mean, std=own_std)
        log(f"{name}: inputs normalized with its own mean {list(own_mean)}, std {list(own_std)}")
        if teacher is not None:
            teacher = Renormalized(teacher, own_mean, own_std, data.mean, data.std).eval()
        return own, teacher

    def baseline(self, data=None) -> dict[str, Any]:
        """The same student without KD: identical recipe, seed and data, hard labels only."""
        return self.train("baseline", self.cfg.student, self.task_method, None, data=data)

    @property
    def task_method(self) -> str:
        """The hard-label loss of teachers and baselines: ``ce``, or ``bce`` for sigmoid-output methods."""
        from edgekd.train.methods import METHODS

        return METHODS.get(self.cfg.distill.method).task_method


DATA_INIT_IMAGES = 5000  # a fixed prefix of the training split: enough for 2×2-patch statistics, and deterministic


def data_init(model, data) -> dict[str, Any]:
    """Call ``model.data_init`` on the first training images, normalized as training sees them
    (without augmentation); returns what the checkpoint records about it."""
    import numpy as np
    import torch

    n = min(DATA_INIT_IMAGES, len(data.train))
    if data.train.lazy:  # streamed images: decode the prefix
        images = np.stack([data.train.images.decode(i) for i in range(n)])
    else:
        images = np.ascontiguousarray(data.train.images[:n])
    x = torch.from_numpy(images).float() / 255.0
    c = x.shape[1]
    x = (x - torch.tensor(data.mean).view(1, c, 1, 1)) / torch.tensor(data.std).view(1, c, 1, 1)
    return model.data_init(x)


def check_output(model, data, arch: str) -> None:
    """A model whose output does not fit the task (a classifier on masks) fails here, before training."""
    import torch

    was_training = model.training
    model.eval()  # one batch-1 forward: no batch-norm statistics move, no random numbers drawn
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, data.in_channels, *data.image_size))
    finally:
        model.train(was_training)
    if isinstance(out, torch.Tensor):
        get_task(data.task).check_model_output(tuple(out.shape), data.num_classes, data.image_size, arch)
