"""The teacher side of a run: a teacher trained or loaded from a checkpoint, and finished stages
loaded back as frozen models (the next stage's teacher). A mixin of :class:`edgekd.train.context.RunContext`."""

from __future__ import annotations

from typing import Any

from edgekd.config import StageConfig, named_archs
from edgekd.errors import ConfigError, EdgekdError
from edgekd.tasks import get_task
from edgekd.train.summary import weak_teacher
from edgekd.ui import log, warn


class TeacherStages:
    """``teacher``, ``load``, ``frozen``, ``load_teacher``: they use the context's ``cfg``, ``data``,
    ``out_dir``, ``wall``, ``done``, ``score`` and ``train``."""

    def teacher(self, data=None, name: str = "teacher", recipe: StageConfig | None = None, seed: int | None = None):
        """(frozen teacher fed ``data``'s batches, its record): loaded from ``recipe.checkpoint`` or trained."""
        from edgekd.checkpoint import build_model
        from edgekd.train.trainer import tta

        data = data or self.data
        recipe = recipe or self.cfg.teacher
        done = self.done(name)
        if done is not None:
            self.wall[name] = done["metrics"]["wall_s"]
            path = self.out_dir / f"{name}.pt"
            return tta(self.frozen(build_model(done, path, arch=named_archs(self.cfg)), done, data), recipe), done[
                "metrics"
            ]
        if recipe.checkpoint:
            model, result = self.load_teacher(recipe.checkpoint, name=name, data=data, recipe=recipe)
            self.wall[name] = 0.0
            return tta(model, recipe), result  # teacher.tta_flip: soft targets from both orientations
        result = self.train(name, recipe, self.task_method, None, data=data, seed=seed)
        return tta(self.load(name, data), recipe), result

    def load(self, name: str, data=None, quiet: bool = False):
        """Finished stage ``<name>.pt`` as a frozen model fed ``data``'s batches (the next stage's teacher)."""
        from edgekd.checkpoint import load_model

        model, ckpt = load_model(self.out_dir / f"{name}.pt", arch=named_archs(self.cfg))
        return self.frozen(model, ckpt, data or self.data, quiet)

    @staticmethod
    def frozen(model, ckpt: dict[str, Any], data, quiet: bool = False):
        """Eval mode, no gradients, and re-normalized input when ``data`` is normalized differently."""
        from edgekd.train.teachers import with_input_stats

        model = with_input_stats(model, ckpt, data, log=None if quiet else log).eval()
        model.requires_grad_(False)
        return model

    def load_teacher(self, path: str, name: str = "teacher", data=None, recipe: StageConfig | None = None):
        """A given teacher checkpoint: checked against the data, evaluated, copied into the run."""
        from edgekd.checkpoint import save_checkpoint

        data = data or self.data
        model, ckpt = self.checked_teacher(path, data=data, recipe=recipe, quiet=True)
        model = self.frozen(model, ckpt, data)
        result = self.score(model, ckpt["arch"], data, checkpoint=f"{name}.pt")
        # any teacher from a file is checked on val before it teaches: a file says how it was
        # trained, not that this data reaches it the same way (preprocessing, class order). A
        # teacher trained in this run is not (its stage's record gets the NEAR CHANCE warning).
        weak = (
            weak_teacher(result["val_acc"], data.num_classes, len(data.val)) if data.task == "classification" else None
        )
        if weak and not self.cfg.distill.allow_weak_teacher:
            raise EdgekdError(
                f"teacher {path} scores {weak}, so it would teach noise. {weak_causes(ckpt, data)}; "
                "distill.allow_weak_teacher=true starts KD anyway"
            )
        if weak:
            warn(f"teacher {path} scores {weak}; KD starts anyway (distill.allow_weak_teacher=true)")
        ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "edgekd_version", "train_state")}
        ckpt.update(role=name, metrics=result, complete=True, source=str(path))
        save_checkpoint(self.out_dir / f"{name}.pt", ckpt)
        key = f"val_{get_task(data.task).metric}"
        log(f"{name}: loaded {path} ({ckpt['arch']}), {key} {result[key]:.4f}")
        return model, result

    def checked_teacher(
        self,
        path: str,
        key: str = "teacher.checkpoint",
        data=None,
        recipe: StageConfig | None = None,
        quiet: bool = False,
    ):
        """(model, checkpoint) of a given teacher file, checked against the data. A full checkpoint
        names its architecture, which wins over ``teacher.arch`` (its weights fit only that one;
        the log says so unless ``quiet``); a bare state_dict is read into ``teacher.arch``. A
        ``module:factory`` name inside the file is honored only when the config names it too."""
        from edgekd.checkpoint import build_model, check_compatible, load_checkpoint, load_weights, model_payload
        from edgekd.models import create_model

        data = data or self.data
        t = recipe or self.cfg.teacher
        ckpt = load_checkpoint(path)
        if ckpt["format"] == "state_dict":  # weights from elsewhere: the configured arch, this data's input
            model = create_model(t.arch, data.num_classes, data.in_channels, data.image_size, **t.kwargs)
            load_weights(model, ckpt["state_dict"], path)
            info = data.describe()
            if t.mean is not None:  # its own normalization: recorded in its checkpoint, re-normalized to (frozen)
                if len(t.mean) != data.in_channels:
                    raise ConfigError(
                        f"config: teacher.mean has {len(t.mean)} values, the data {data.in_channels} channel(s)"
                    )
                info = {**info, "mean": list(t.mean), "std": list(t.std)}
            return model, model_payload(model, t.arch, t.kwargs, info, "teacher")
        check_compatible(ckpt, data.describe(), path)
        model = build_model(ckpt, path, arch=named_archs(self.cfg))
        if not quiet and key == "teacher.checkpoint" and ckpt["arch"] != t.arch:
            log(
                f"teacher: {path} holds a {ckpt['arch']} and teacher.arch is {t.arch}: the teacher is the checkpoint's "
                f"{ckpt['arch']}, since its weights fit only that architecture "
                "(teacher.arch is read for a bare state_dict)"
            )
        return model, ckpt


def weak_causes(ckpt: dict[str, Any], data) -> str:
    """The likely reasons a loaded teacher scores near chance on ``data``, most specific first."""
    if "format" not in ckpt:  # a bare state_dict, read into teacher.arch: it records nothing
        return (
            "Usual causes: its preprocessing differs (set teacher.mean/teacher.std to the statistics it was "
            "trained with) or its class order differs from the data's (sorted folder names)"
        )
    own = ckpt.get("data", {})
    classes = own.get("classes")
    if isinstance(classes, list) and sorted(map(str, classes)) == sorted(data.classes) and classes != data.classes:
        return f"Its classes are in another order ({_few(classes)}; the data's: {_few(data.classes)})"
    before = ckpt.get("metrics", {}).get("val_acc") if isinstance(ckpt.get("metrics"), dict) else None
    if isinstance(before, float) and weak_teacher(before, data.num_classes, 10**9) is not None:
        return f"It scored {100 * before:.1f} % on val where it was trained too: it learned next to nothing there"
    where = f"{own.get('dataset')}, mean {own.get('mean')}, std {own.get('std')}"
    return (
        f"Likely causes: its labels mean other classes than the data's (another class order or labelling; it "
        f"was trained on {where}), or this data's images differ from its training images (other preprocessing)"
    )


def _few(names, n: int = 4) -> str:
    names = [str(v) for v in names]
    return ", ".join(names[:n]) + (", …" if len(names) > n else "")
