"""KD methods: ``nn.Module``s that turn (student output, teacher output, targets) into loss parts.

Every method returns a dict with at least ``loss`` (what is back-propagated); the other entries
(``task_loss``, ``kd_loss``, …) are logged. A method that needs intermediate features registers
forward hooks on the models in :meth:`DistillMethod.attach` (by module path), so users' models need
no rewriting. Methods may own trainable parameters (e.g. a FitNets regressor); the trainer adds them
to the optimizer, and they are never part of the saved student.

A method also names its *flow* (``edgekd.train.flows``): how the run is orchestrated around the
loss — one teacher then one student (``standard``), a chain of teacher assistants, an ensemble of
teachers, a source-domain teacher. Targets of ``-1`` mark unlabeled samples (transfer sets, target
domains): the hard-label term ignores them, the soft term uses every sample.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

METHODS: Registry = Registry(
    "KD method", providers=["edgekd.train.methods", "edgekd.train.fitnets", "edgekd.train.logit_methods"]
)

# distill keys every method reads; the others are the methods' own sections (distill.<method>.*,
# see DistillMethod.config_section)
COMMON_KEYS = ("method", "temperature", "alpha", "baseline", "select", "allow_weak_teacher", "qat")


def task_ce(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on hard labels, averaged over the labeled samples only (label ``-1``: none).

    Averaging over labeled samples keeps the term's scale independent of how many unlabeled
    samples share the batch; a batch with no labels contributes exactly 0.
    """
    if (
        targets.dtype.is_floating_point and targets.dim() == 2
    ):  # soft label rows (mixup/cutmix); all-zero row: unlabeled
        labeled = targets.sum(1) > 0
        per_sample = F.cross_entropy(logits.float(), targets.float(), reduction="none", label_smoothing=label_smoothing)
        return (per_sample * labeled).sum() / labeled.sum().clamp_min(1)
    labeled = targets >= 0
    per_sample = F.cross_entropy(
        logits.float(), targets.clamp_min(0), reduction="none", label_smoothing=label_smoothing
    )
    return (per_sample * labeled).sum() / labeled.sum().clamp_min(1)


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft term T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch.

    ``reduction='batchmean'`` sums over classes and divides by the batch size: the mathematically
    correct KL. ``'mean'`` would also divide by the number of classes and silently shrink the term.
    The T² keeps its gradient scale independent of T (the soft gradients scale as 1/T²).
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def kd_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Logit matching ‖z_s − z_t‖², summed over classes and averaged over the batch.

    The limit of T²·KL for large T (up to a factor 1/(2·classes) for zero-mean logits); summed
    over classes for the same reason KL uses ``batchmean``: the per-sample distance must not be
    divided by the number of classes.
    """
    diff = student_logits.float() - teacher_logits.float()
    return diff.pow(2).flatten(1).sum(1).mean()


def sigmoid_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T·BCE(σ(z_t/T), σ(z_s/T)), averaged over elements (pixels, or one-vs-rest classes).

    For sigmoid outputs the soft gradient scales as 1/T (not 1/T² as for softmax), hence the
    factor T. BCE against a soft target includes the target's own entropy, so the term is not 0
    when the distributions agree; its gradient is (σ(z_s/T) − σ(z_t/T))/T · T.
    """
    t = temperature
    soft_target = torch.sigmoid(teacher_logits.float() / t)
    return F.binary_cross_entropy_with_logits(student_logits.float() / t, soft_target) * t


def hard_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE(y, σ(z)) for sigmoid outputs. ``targets`` is either a 0/1 tensor shaped like
    ``logits`` (masks, binary labels) or class indices (N,) for (N, K) logits, taken one-vs-rest;
    class index ``-1`` (unlabeled) rows are ignored."""
    z = logits.float()
    if targets.dtype in (torch.int64, torch.int32) and targets.dim() == 1 and z.dim() == 2:
        labeled = (targets >= 0).float()[:, None]
        y = F.one_hot(targets.clamp_min(0), z.shape[1]).float()
        per_element = F.binary_cross_entropy_with_logits(z, y, reduction="none") * labeled
        return per_element.sum() / (labeled.sum() * z.shape[1]).clamp_min(1)
    return F.binary_cross_entropy_with_logits(z, targets.float().view_as(z))


class DistillMethod(nn.Module):
    """Base class. ``needs_teacher`` False means the trainer never runs a teacher (plain training)."""

    needs_teacher = True
    flow = "standard"  # how the run is orchestrated (edgekd.train.flows.FLOWS)
    # the distill.<section> this method reads beyond COMMON_KEYS (a dataclass in edgekd.config, where
    # configs load without torch); a literal, so `edgekd distill --help` lists its keys from source
    config_section: str | None = None
    uses_source = False  # whether the top-level `source` data section means anything to it
    uses_temperature = True  # False: distill.temperature changes nothing (a sweep over T is pointless)
    uses_alpha = True
    task_method = "ce"  # how the teacher and the no-KD baseline learn: outputs of the same kind as the student's
    reads_teacher_features = False  # True: hooks read the teacher's layers, so its outputs cannot be cached
    # the data tasks (edgekd.tasks) the loss means something for: softmax over classes is
    # classification only; per-element sigmoid losses also take per-pixel masks
    tasks: tuple[str, ...] = ("classification",)
    all_params_used = True  # False: some student parameters get no gradient (DDP must look for them)

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> DistillMethod:
        """Build from the ``distill`` and student ``stage`` config sections."""
        raise NotImplementedError

    @classmethod
    def check(cls, config: Any) -> None:
        """Cross-key requirements of this method (raises ConfigError). Default: none."""

    def attach(self, student: nn.Module, teacher: nn.Module | None, input_shape: tuple[int, ...] = ()) -> None:
        """Register forward hooks on the models (features by module path). Default: none.

        ``input_shape`` is one batch's shape (1, C, H, W): enough to probe feature shapes."""

    def detach(self) -> None:
        """Remove what :meth:`attach` registered."""

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@METHODS.register("ce")
class CrossEntropy(DistillMethod):
    """Plain supervised training on hard labels: the teacher's recipe and the no-KD baseline."""

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> CrossEntropy:
        return cls(label_smoothing=stage.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        loss = task_ce(student_logits, targets, self.label_smoothing)
        return {"loss": loss, "task_loss": loss.detach()}


@METHODS.register("bce")
class BinaryCrossEntropy(DistillMethod):
    """Plain supervised training of sigmoid outputs, BCE(y, σ(z)) (class labels one-vs-rest, or masks
    per pixel): teacher and baseline of kd_sigmoid."""

    needs_teacher = False
    tasks = ("classification", "segmentation")

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> BinaryCrossEntropy:
        return cls()

    def forward(self, student_logits, teacher_logits, targets):
        loss = hard_bce(student_logits, targets)
        return {"loss": loss, "task_loss": loss.detach()}


@METHODS.register("kd")
class HintonKD(DistillMethod):
    """Hinton et al. 2015: (1-α)·CE(y, z_s) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> HintonKD:
        return cls(distill.temperature, distill.alpha, stage.label_smoothing)

    def soft_term(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return kd_kl_loss(student_logits, teacher_logits, self.temperature)

    def hard_term(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return task_ce(student_logits, targets, self.label_smoothing)

    def forward(self, student_logits, teacher_logits, targets):
        task = self.hard_term(student_logits, targets)
        soft = self.soft_term(student_logits, teacher_logits)
        loss = (1.0 - self.alpha) * task + self.alpha * soft
        return {"loss": loss, "task_loss": task.detach(), "kd_loss": soft.detach()}


@METHODS.register("kd_soft")
class SoftOnlyKD(HintonKD):
    """Hinton KD with α = 1: the soft term T²·KL alone (distill.alpha is ignored; CE only logged)."""

    uses_alpha = False

    @classmethod
    def from_config(cls, distill: Any, stage: Any) -> SoftOnlyKD:
        return cls(distill.temperature, 1.0, stage.label_smoothing)


@METHODS.register("kd_mse")
class LogitMSE(HintonKD):
    """(1-α)·CE + α·‖z_s − z_t‖² (logit matching; batch mean, sum over classes; no temperature)."""

    uses_temperature = False

    def soft_term(self, student_logits, teacher_logits):
        return kd_mse_loss(student_logits, teacher_logits)


@METHODS.register("kd_sigmoid")
class SigmoidKD(HintonKD):
    """Sigmoid outputs: (1-λ)·BCE(y, σ(z_s)) + λ·T·BCE(σ(z_t/T), σ(z_s/T)), λ = distill.alpha; per pixel
    on segmentation masks (the segmentation method); teacher and baseline learn with bce."""

    task_method = "bce"  # soft targets σ(z_t/T) only mean something if the teacher was trained as sigmoids
    tasks = ("classification", "segmentation")  # both terms are element means: per class, or per pixel

    def soft_term(self, student_logits, teacher_logits):
        return sigmoid_kd_loss(student_logits, teacher_logits, self.temperature)

    def hard_term(self, student_logits, targets):
        return hard_bce(student_logits, targets)


@METHODS.register("takd")
class TeacherAssistantKD(HintonKD):
    """TAKD (Mirzadeh et al. 2020): teacher → TA₁ → … → student, each link Hinton KD. distill.takd.assistants;
    ta_select chain (teacher → TA₁ → … → student) or auto (train each candidate, keep the one nearest the
    teacher/student accuracy midpoint)."""

    flow = "chain"
    config_section = "takd"

    @classmethod
    def check(cls, config: Any) -> None:
        d = config.distill
        if not d.takd.assistants:
            raise ConfigError(
                "config: distill.method=takd needs distill.takd.assistants, e.g. [plain6] (chain) or candidates "
                "for ta_select=auto"
            )
        if d.takd.ta_select == "auto" and not d.baseline:
            raise ConfigError(
                "config: distill.takd.ta_select=auto picks the TA nearest the teacher–student accuracy midpoint and "
                "needs the no-KD student's accuracy: set distill.baseline=true"
            )


@METHODS.register("ensemble")
class EnsembleKD(HintonKD):
    """Multi-teacher KD: soft target = mean of the members' softened distributions
    (distill.ensemble.teachers/teacher_seeds/teacher_checkpoints)."""

    flow = "ensemble"
    config_section = "ensemble"

    @classmethod
    def check(cls, config: Any) -> None:
        d = config.distill.ensemble
        n = len(d.teacher_checkpoints) or max(len(d.teachers), len(d.teacher_seeds))
        if n < 2:
            raise ConfigError(
                "config: distill.method=ensemble needs two or more members: distill.ensemble.teachers (archs), "
                "distill.ensemble.teacher_seeds (seeds of teacher.arch) or distill.ensemble.teacher_checkpoints"
            )
        if config.teacher.checkpoint:
            raise ConfigError(
                "config: with distill.method=ensemble give checkpoints as distill.ensemble.teacher_checkpoints, "
                "not teacher.checkpoint"
            )


@METHODS.register("transfer")
class TransferSetKD(HintonKD):
    """Hinton KD plus an unlabeled transfer set (distill.transfer.set): its images get the soft term only
    (label -1; CE ignores them); transfer.labeled=false: those images alone."""

    flow = "transfer"
    config_section = "transfer"

    @classmethod
    def check(cls, config: Any) -> None:
        if not config.distill.transfer.set:
            raise ConfigError(
                "config: distill.method=transfer needs distill.transfer.set (a folder or archive of images)"
            )


@METHODS.register("domain")
class DomainAdaptationKD(HintonKD):
    """Domain adaptation: teacher learns on `source` (a data section), student on `data` (target) images with
    soft targets (+ source labels); both domains reported. data.shift (grayscale|blur|invert|noise|color_jitter)
    makes a target domain from any dataset."""

    flow = "domain"
    config_section = "domain"
    uses_source = True

    @classmethod
    def check(cls, config: Any) -> None:
        d = config.distill
        if config.source is None:
            raise ConfigError(
                "config: distill.method=domain needs a `source` data section (the teacher's domain), e.g. source: "
                "{name: digits}"
            )
        if d.baseline and not (d.domain.target_labels or d.domain.source_labels):
            raise ConfigError(
                "config: distill.baseline trains the student on labels alone, and with "
                "distill.domain.target_labels and distill.domain.source_labels both false there are none; "
                "set one of them, or distill.baseline=false"
            )


def build_method(name: str, distill: Any, stage: Any) -> DistillMethod:
    return METHODS.get(name).from_config(distill, stage)


def check_method_config(config: Any) -> None:
    """The chosen method's requirements, and no key set that the method would silently ignore."""
    cls = METHODS.get(config.distill.method)
    defaults = type(config.distill)()
    used = set(COMMON_KEYS) | {cls.config_section}
    for f in dataclasses.fields(config.distill):
        if f.name in used:
            continue
        value, default = getattr(config.distill, f.name), getattr(defaults, f.name)
        changed = (  # name the key itself, not just its section
            [
                f"{f.name}.{k.name}"
                for k in dataclasses.fields(value)
                if getattr(value, k.name) != getattr(default, k.name)
            ]
            if dataclasses.is_dataclass(value)
            else ([f.name] if value != default else [])
        )
        if changed:
            owners = [n for n in METHODS.names() if METHODS.get(n).config_section == f.name]
            raise ConfigError(
                f"config: distill.{changed[0]} does nothing with distill.method={config.distill.method}"
                + (f" (it is read by: {', '.join(owners)})" if owners else "")
            )
    if config.source is not None and not cls.uses_source:
        readers = [n for n in METHODS.names() if METHODS.get(n).uses_source]
        raise ConfigError(
            f"config: the `source` data section does nothing with distill.method={config.distill.method}"
            + (f" (it is read by: {', '.join(readers)})" if readers else "")
        )
    _check_task(cls, config)
    cls.check(config)
    if config.distill.qat.epochs:
        if cls.flow not in ("standard", "transfer"):
            raise ConfigError(
                "config: distill.qat runs after the standard and transfer flows, not with "
                f"distill.method={config.distill.method}"
            )
        from edgekd.train.pt2e import import_pt2e

        import_pt2e()  # a missing extra is an error before any training, not after the float stage


def _check_task(cls: type[DistillMethod], config: Any) -> None:
    """The method's loss must fit the data's targets (softmax KD on one-channel masks means nothing),
    and so must the loss its teacher and baseline learn with (``task_method``)."""
    from edgekd.data import dataset_task

    task, name = dataset_task(config.data.name), config.distill.method
    fitting = " or ".join(n for n in METHODS.names() if task in METHODS.get(n).tasks and METHODS.get(n).needs_teacher)
    if task not in cls.tasks:
        raise ConfigError(
            f"config: distill.method={name} is for {' and '.join(cls.tasks)} data, and data.name={config.data.name} "
            f"is {task} data; use distill.method={fitting}"
        )
    if task not in METHODS.get(cls.task_method).tasks:
        raise ConfigError(
            f"config: distill.method={name} trains its teacher and baseline with {cls.task_method}, which is not for "
            f"{task} data (data.name={config.data.name}); use distill.method={fitting}"
        )
