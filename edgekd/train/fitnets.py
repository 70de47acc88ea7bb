"""FitNets hints (Romero et al. 2015): a student layer regressed onto a teacher layer.

The student's *guided* layer output goes through a small learned regressor (1×1 or 3×3 conv, or a
linear map for flat features) to the shape of the teacher's *hint* layer output, and the MSE
between them is the hint loss. Layers are named by module path (``distill.fitnets.guided_layer``,
``distill.fitnets.hint_layer``) and read through forward hooks.

Two forms (``distill.fitnets.hint_mode``):

* ``two_stage`` (the paper): stage 1 trains the student's lower part — everything up to the guided
  layer — on the hint loss alone for ``distill.fitnets.hint_epochs``; stage 2 is Hinton KD on the whole
  student, starting from the stage-1 weights. The regressor is dropped after stage 1.
* ``single_stage``: one run whose loss is the KD loss + ``distill.fitnets.hint_weight`` · hint loss.

The regressor belongs to the method, never to the student: ``student.pt`` holds the bare student
(the regressor's weights travel only in the training state of ``*_last.pt``, for resuming).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError
from edgekd.train.flows import FLOWS
from edgekd.train.hooks import FeatureHook, resolve_module
from edgekd.train.methods import METHODS, HintonKD


def build_regressor(student_shape: torch.Size, teacher_shape: torch.Size, kind: str) -> nn.Module:
    """A module mapping guided features (student_shape, batch first) to the hint's channels."""
    if len(student_shape) == 4 and len(teacher_shape) == 4:
        k = 3 if kind == "conv3x3" else 1
        return nn.Conv2d(student_shape[1], teacher_shape[1], k, padding=k // 2)
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return nn.Linear(student_shape[1], teacher_shape[1])
    raise ConfigError(
        f"fitnets: the guided layer gives {tuple(student_shape[1:])} features and the hint layer "
        f"{tuple(teacher_shape[1:])}: "
        "pick two convolutional (C, H, W) layers or two flat (C,) ones"
    )


def match_spatial(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bring (B, C, H, W) features to the hint's H×W: average-pool down, bilinear up."""
    if x.dim() != 4 or tuple(x.shape[2:]) == tuple(size):
        return x
    if x.shape[2] >= size[0] and x.shape[3] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@METHODS.register("fitnets")
class FitNets(HintonKD):
    """FitNets (Romero et al. 2015): MSE hint from teacher distill.fitnets.hint_layer to a regressor on
    student distill.fitnets.guided_layer (module paths); hint_mode two_stage (hint_epochs of hints, then
    KD) or single_stage (KD + hint_weight·hint). The regressor is never part of student.pt."""

    flow = "fitnets"
    config_section = "fitnets"
    reads_teacher_features = True

    def __init__(
        self,
        hint_layer: str,
        guided_layer: str,
        regressor: str = "conv3x3",
        hint_weight: float = 1.0,
        temperature: float = 4.0,
        alpha: float = 0.9,
        label_smoothing: float = 0.0,
        hint_only: bool = False,
    ) -> None:
        super().__init__(temperature, alpha, label_smoothing)
        self.hint_layer, self.guided_layer = hint_layer, guided_layer
        self.regressor_kind = regressor
        self.hint_weight = hint_weight
        self.hint_only = hint_only  # two_stage stage 1: the hint loss alone
        self.all_params_used = not hint_only  # stage 1 leaves the layers above the guided one untouched
        self.regressor: nn.Module | None = None
        self._hooks: list[FeatureHook] = []

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> FitNets:
        """The single-stage method (KD + weighted hint)."""
        f = distill.fitnets
        return cls(
            f.hint_layer,
            f.guided_layer,
            f.hint_regressor,
            f.hint_weight,
            distill.temperature,
            distill.alpha,
            stage.label_smoothing,
        )

    @classmethod
    def hint_stage(cls, distill: Any, stage: Any) -> FitNets:
        """Stage 1 of the two-stage form: hint loss alone."""
        f = distill.fitnets
        return cls(
            f.hint_layer,
            f.guided_layer,
            f.hint_regressor,
            1.0,
            distill.temperature,
            distill.alpha,
            stage.label_smoothing,
            hint_only=True,
        )

    @classmethod
    def check(cls, config: Any) -> None:
        d = config.distill.fitnets
        missing = [k for k in ("hint_layer", "guided_layer") if not getattr(d, k)]
        if missing:
            raise ConfigError(
                f"config: distill.method=fitnets needs {' and '.join('distill.fitnets.' + k for k in missing)} "
                "(module paths, e.g. distill.fitnets.hint_layer=layer2, distill.fitnets.guided_layer=features.4; "
                "see model.named_modules())"
            )
        if d.hint_mode == "two_stage" and d.hint_epochs < 1:
            raise ConfigError(
                "config: distill.fitnets.hint_mode=two_stage needs distill.fitnets.hint_epochs of 1 or more "
                "(or hint_mode=single_stage)"
            )

    def attach(self, student: nn.Module, teacher: nn.Module | None, input_shape: tuple[int, ...] = ()) -> None:
        if teacher is None:
            raise RuntimeError("fitnets needs a teacher")
        guided = resolve_module(student, self.guided_layer, "distill.fitnets.guided_layer", "student")
        hint = resolve_module(teacher, self.hint_layer, "distill.fitnets.hint_layer", "teacher")
        self._hooks = [FeatureHook(guided), FeatureHook(hint)]
        if self.regressor is None:
            s_shape, t_shape = self._probe(student, teacher, input_shape)
            device = next(student.parameters()).device
            self.regressor = build_regressor(s_shape, t_shape, self.regressor_kind).to(device)

    def _probe(
        self, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, ...]
    ) -> tuple[torch.Size, torch.Size]:
        """Feature shapes from one dummy forward of each model (eval mode: BN statistics untouched)."""
        device = next(student.parameters()).device
        x = torch.zeros(input_shape, device=device)
        shapes = []
        for model, hook in ((student, self._hooks[0]), (teacher, self._hooks[1])):
            was_training = model.training
            model.eval()
            with torch.no_grad():
                model(x)
            model.train(was_training)
            shapes.append(hook.pop().shape)
        return shapes[0], shapes[1]

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def hint_loss(self) -> torch.Tensor:
        guided, hint = self._hooks[0].pop(), self._hooks[1].pop()
        assert self.regressor is not None
        mapped = self.regressor(guided.float())
        mapped = match_spatial(mapped, tuple(hint.shape[2:]))
        return F.mse_loss(mapped, hint.detach().float())

    def forward(self, student_logits, teacher_logits, targets):
        hint = self.hint_loss()
        if self.hint_only:
            return {"loss": hint, "hint_loss": hint.detach()}
        parts = super().forward(student_logits, teacher_logits, targets)
        parts["loss"] = parts["loss"] + self.hint_weight * hint
        parts["hint_loss"] = hint.detach()
        return parts


def check_layers(run) -> None:
    """Resolve both module paths and probe the feature shapes on fresh models, before any training:
    a wrong path must not cost a teacher's training time."""
    from edgekd.models import create_model

    cfg, data = run.cfg, run.data
    shape = (data.num_classes, data.in_channels, data.image_size)
    teacher, teacher_arch = None, cfg.teacher.arch
    if cfg.teacher.checkpoint:  # a full checkpoint names its own arch
        teacher, ckpt = run.checked_teacher(cfg.teacher.checkpoint, quiet=True)
        teacher_arch = ckpt["arch"]
    teacher = teacher or create_model(cfg.teacher.arch, *shape, **cfg.teacher.kwargs)
    student = create_model(cfg.student.arch, *shape, **cfg.student.kwargs)
    f = cfg.distill.fitnets
    resolve_module(teacher, f.hint_layer, "distill.fitnets.hint_layer", "teacher", teacher_arch)
    resolve_module(student, f.guided_layer, "distill.fitnets.guided_layer", "student", cfg.student.arch)
    probe = FitNets.from_config(cfg.distill, cfg.student)
    probe.attach(student, teacher, (1, data.in_channels, *data.image_size))
    probe.detach()


@FLOWS.register("fitnets")
def fitnets_flow(run) -> dict[str, Any]:
    """Teacher → (hint stage →) student → baseline; see the module docstring."""
    cfg = run.cfg
    d = cfg.distill
    summary: dict[str, Any] = {}
    teacher, summary["teacher"] = run.teacher()
    if d.fitnets.hint_mode == "two_stage":
        # stage 1: only the layers up to the guided one receive gradients (the loss does not
        # depend on the rest), so the upper part leaves this stage as initialized; the regressor
        # is dropped with the stage. Val accuracy means nothing here: keep the last epoch.
        hint_recipe = dataclasses.replace(cfg.student, epochs=d.fitnets.hint_epochs)
        rec = run.train(
            "student_hint",
            hint_recipe,
            FitNets.hint_stage(d, cfg.student),
            teacher,
            select="last",
            method_name="fitnets_hint",
        )
        history = run.metrics.by_stage.get("student_hint", [])
        summary["hint"] = {
            "arch": rec["arch"],
            "epochs": rec["epochs"],
            "wall_s": rec["wall_s"],
            "hint_loss": history[-1]["hint_loss"] if history else None,
            "checkpoint": rec["checkpoint"],
        }
        kd = HintonKD.from_config(d, cfg.student)
        summary["student"] = run.train(
            "student", cfg.student, kd, teacher, init=run.out_dir / "student_hint.pt", method_name="fitnets"
        )
    else:
        summary["student"] = run.train("student", cfg.student, "fitnets", teacher)
    if d.baseline:
        summary["baseline"] = run.baseline()
    return summary


fitnets_flow.check = check_layers  # the run calls it before touching its folder
