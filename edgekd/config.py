"""Typed, frozen run configuration: dataclass defaults ← YAML file ← ``--set key=value`` flags.

The dataclasses below are the schema: their field types drive validation, so there is no hand-kept
list of keys. Unknown keys are rejected with a did-you-mean suggestion; values are checked against
the field's type (``Literal`` choices included). The resolved config is saved next to every output
so that a run can be reproduced from its folder alone.

YAML is read with ``safe_load`` only: a config never executes code.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from edgekd.errors import ConfigError
from edgekd.limits import MAX_IMAGE_SIDE, MAX_THREADS, MAX_TIMEOUT_S, check_number
from edgekd.registry import did_you_mean


def opt(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING) -> Any:  # noqa: A002
    """A config field with its help text (shown by ``edgekd distill --help`` and `edgekd config`)."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


# ONNX opsets the export takes: 17, the default the converters were checked with, up to 20, the
# last torch's TorchScript exporter (the one edgekd uses) writes; checked before any work (opset 99
# failed only after the parity setup, and 1e20 dumped torch's graph before a pybind message)
MIN_OPSET, MAX_OPSET = 17, 20
# Images an export.*_samples key may ask for. A count above the data's size means all of it (the
# export clamps), so the bound only catches a typo or an exponent too many (1e12), which used to pass
# silently; it is above every test split edgekd reads (ImageNet's val is 50,000) and far above what
# int8 calibration needs (a few hundred), and 10^6 CIFAR-sized images are already 3 GB in eval.npz.
MAX_EXPORT_SAMPLES = 1_000_000


@dataclass(frozen=True)
class DataConfig:
    name: str = opt(
        "digits", "digits | imagefolder | cifar10 | svhn; segmentation: shapes | segfolder (see `edgekd datasets`)"
    )
    root: str | None = opt(None, "folder or .tar.gz of one; required except for digits and shapes")
    download: bool = opt(False, "cifar10/svhn: let torchvision fetch the data when online")
    val_fraction: float = opt(0.1, "share of the training split held out for model selection")
    test_fraction: float = opt(0.2, "digits and shapes: share held out as the test split (they have no official one)")
    samples: int | None = opt(None, "shapes: images generated (train + test); None: 2,000")
    split_seed: int = opt(0, "fixed apart from `seed` so every run sees the same split")
    train_limit: int | None = opt(
        None, "keep at most this many training images (stratified, seeded): quick runs on big data"
    )
    image_size: int | None = opt(None, "resize to this square side; None keeps the data's own size (shapes: 32)")
    augment: Literal["auto", "none", "crop", "flip", "crop_flip"] = opt(
        "auto",
        "training augmentation (masks get the same crop and flip); auto: crop_flip for colour images of 16 px or more "
        "and for segmentation, none for grayscale or smaller (digits-like)",
    )
    crop_padding: int = opt(4, "pixels of padding before the random crop (a shift of up to this many pixels)")
    crop_fill: Literal["zero", "reflect"] = opt(
        "zero",
        "what the crop's padding holds: zero (black, torchvision's RandomCrop) or reflect (the image mirrored at its "
        "border, airbench's; crop_padding must then be smaller than the image)",
    )
    flip: Literal["random", "alternate"] = opt(
        "random",
        "how a flip augmentation flips: random (each view draws every image's flip anew) or alternate (one random "
        "flip per image, inverted every other view: each image is seen both ways in any two epochs, airbench's)",
    )
    mean: tuple[float, ...] | None = opt(
        None, "per-channel normalization mean on 0–1 pixels; None: declared by the dataset or computed on train"
    )
    std: tuple[float, ...] | None = opt(None, "per-channel normalization std, set together with mean")
    batch_size: int = opt(128, "training batch size")
    eval_batch_size: int = opt(512, "batch size for val/test evaluation")
    cache_dir: str | None = opt(None, "extracted archives and decoded images; None: $EDGEKD_CACHE or ~/.cache/edgekd")
    storage: Literal["auto", "memory", "stream"] = opt(
        "auto",
        "imagefolder: memory decodes once (cached); stream decodes on access in DataLoader workers; auto streams what "
        "would not fit",
    )
    memory_limit_gb: float | None = opt(
        None, "storage=auto streams above this decoded size; None: half the available memory"
    )
    workers: int = opt(2, "DataLoader worker processes for streamed images")
    views: int | None = opt(
        None,
        "a fixed set of K augmented views (epoch e uses view e mod K), so teacher outputs can be cached; None: fresh "
        "augmentation every epoch",
    )
    view_seed: int | None = opt(
        None,
        "seed of the augmentation draws (crops, flips, mixup/cutmix; with views, of the fixed views); None: the run's "
        "seed. A fixed value makes every student seed see the same views, so they share one cached set of teacher "
        "outputs",
    )
    shift: Literal["none", "grayscale", "blur", "invert", "noise", "color_jitter"] = opt(
        "none", "deterministic domain shift applied to every split (a target domain for distill.method=domain)"
    )


@dataclass(frozen=True)
class StageConfig:
    """One model and the recipe that trains it (teacher or student)."""

    arch: str = opt("resnet8", "registry name (`edgekd models`) or `package.module:factory`")
    kwargs: dict[str, Any] = opt(help="extra model constructor arguments, e.g. {width: 2}", factory=dict)
    checkpoint: str | None = opt(None, "teacher: load instead of training; student: initial weights")
    # a model pretrained elsewhere expects its own statistics (ImageNet weights: [0.485, 0.456,
    # 0.406] / [0.229, 0.224, 0.225]); the batches are re-normalized to them on the way in
    mean: tuple[float, ...] | None = opt(
        None,
        "per-channel input mean (0-1 pixels) of this model: a teacher.checkpoint given as a bare state_dict "
        "was trained with it, a student (and its baseline) trains with it and its bundle files fold it in; "
        "None: the data's",
    )
    std: tuple[float, ...] | None = opt(None, "with mean: the per-channel std (same rules)")
    bn_momentum: float | None = opt(
        None,
        "momentum of every BatchNorm layer's running statistics, in (0, 1] (PyTorch's convention, its default 0.1); "
        "None: the model's own (torchvision's MobileNetV3: 0.01, too slow for a short recipe)",
    )
    epochs: int = opt(10, "training epochs (teacher: 0 with a checkpoint)")
    optimizer: Literal["sgd", "adamw"] = opt("sgd", "sgd (momentum) or adamw")
    lr: float = opt(0.05, "peak learning rate")
    momentum: float = opt(0.9, "sgd only")
    nesterov: bool = opt(True, "sgd only")
    weight_decay: float = opt(5e-4, "on conv/linear weights; never on BN or biases")
    bias_lr_scale: float = opt(
        1.0, "lr multiplier of BN and bias (1-D) parameters, in (0, 1000] (airbench's 64: biases learn faster)"
    )
    schedule: Literal["cosine", "linear", "step", "constant"] = opt(
        "cosine", "lr schedule after the warm-up, stepped every iteration (linear: a straight line down, airbench's)"
    )
    lr_end: float = opt(0.0, "cosine and linear: the fraction of lr the schedule ends at, in [0, 1] (airbench: 0.07)")
    milestones: tuple[int, ...] = opt((), "step: epochs at which lr is multiplied by gamma")
    gamma: float = opt(0.1, "step: lr factor at each milestone")
    warmup_epochs: int = opt(0, "linear warm-up before the schedule starts")
    warmup_start: float = opt(0.0, "the fraction of lr the warm-up starts from, in [0, 1] (airbench: 0.2)")
    label_smoothing: float = opt(0.0, "on the hard-label cross-entropy")
    lookahead_steps: int = opt(0, "Lookahead: k fast optimizer steps per slow update (0: off)")
    lookahead_alpha: float = opt(0.5, "Lookahead: slow weights move this fraction towards the fast ones every k steps")
    lookahead_ramp: float = opt(
        0.0,
        "Lookahead: 0 keeps lookahead_alpha throughout; p > 0 starts at α 1 (no averaging) and reaches lookahead_alpha "
        "at the end as 1 − (1 − α)·progress^p (airbench: p 3, α 1 − 0.95⁵ ≈ 0.226: move fast, then average)",
    )
    tta_flip: bool = opt(
        False,
        "evaluate with the mean logits of the image and its mirror (a teacher also teaches with them); never exported",
    )
    tta_translate: bool = opt(
        False,
        "with tta_flip: half the weight to the image shifted one pixel down-right and up-left (mirror padding), each "
        "with its mirror too: six passes (airbench's TTA level 2); a teacher also teaches with them",
    )
    mixup: float = opt(
        0.0,
        "mixup Beta(α, α) concentration, 0: off; the teacher sees the same mixed images (classification, in-memory "
        "data)",
    )
    cutmix: float = opt(
        0.0, "cutmix Beta(α, α) concentration, 0: off; with mixup too, each sample takes one of the two"
    )


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware distillation: after the float KD stage, the student is fine-tuned with
    fake quantization that matches TFLite int8, the teacher's soft targets still in the loss."""

    epochs: int = opt(
        0,
        "QAT epochs after the float KD stage (0: no QAT stage); writes student_qat.pt, exported as "
        "student_qat_int8.tflite",
    )
    lr: float = opt(0.005, "QAT peak lr: a fine-tune, so about a tenth of the float stage's")
    observer_epochs: int | None = opt(
        None, "stop updating activation ranges after this many QAT epochs (then only weights learn); None: never"
    )
    calibration_batches: int = opt(8, "training batches that set the activation ranges before the first QAT step")
    bn_epochs: int | None = opt(
        None,
        "train BatchNorm statistics for this many QAT epochs, then freeze them (0: frozen from the start, "
        "the float student's, and the conv-BN fold trained is the one exported; dropout is off with them); "
        "None: never",
    )
    teacher: Literal["teacher", "student"] = opt(
        "teacher",
        "whose outputs the QAT loss distills: the run's teacher, or the float student itself (the int8 "
        "model then learns to decide as the float student does)",
    )


# Each KD method with keys of its own reads them from its section, ``distill.<method>.*``; the
# method names its section (``DistillMethod.config_section`` in edgekd/train/) and `edgekd distill
# --help` lists the section's keys under the method. The sections are declared here, beside the
# common keys, because a config must load where torch (and so the methods) is absent: `edgekd
# deploy --config` and the bench of a bundle read it too.


@dataclass(frozen=True)
class FitnetsConfig:
    """fitnets: a hint from a teacher layer to a student layer (module paths)."""

    hint_layer: str | None = opt(None, "teacher module path whose output is the hint, e.g. layer2 or features.12")
    guided_layer: str | None = opt(None, "student module path regressed onto the hint, e.g. features.4")
    hint_mode: Literal["two_stage", "single_stage"] = opt(
        "two_stage", "two_stage (hint training, then KD) or single_stage (KD + hint_weight·hint)"
    )
    hint_epochs: int = opt(5, "two_stage: epochs of hint training before the KD stage")
    hint_weight: float = opt(1.0, "single_stage: weight of the hint MSE added to the KD loss")
    hint_regressor: Literal["conv1x1", "conv3x3"] = opt(
        "conv3x3", "learned conv mapping guided → hint channels (never saved)"
    )


@dataclass(frozen=True)
class TakdConfig:
    """takd: the chain of teacher assistants."""

    assistants: tuple[str, ...] = opt(
        (), "teacher-assistant archs; chain: teacher → TA₁ → … → student; auto: candidates"
    )
    ta_select: Literal["chain", "auto"] = opt(
        "chain",
        "chain uses every assistant in order; auto trains each from the teacher, keeps the one nearest the "
        "accuracy midpoint",
    )


@dataclass(frozen=True)
class EnsembleConfig:
    """ensemble: the members whose softened distributions are averaged."""

    teachers: tuple[str, ...] = opt((), "one arch per member; empty: teacher.arch for each of teacher_seeds")
    teacher_seeds: tuple[int, ...] = opt((), "one seed per member; empty: seed, seed+1, …")
    teacher_checkpoints: tuple[str, ...] = opt((), "load these members instead of training them")


@dataclass(frozen=True)
class TransferConfig:
    """transfer: an unlabeled transfer set learned from soft targets."""

    set: str | None = opt(
        None, "unlabeled images (flat folder, ImageFolder or archive; labels ignored) learned from soft targets alone"
    )
    labeled: bool = opt(True, "also train on the labeled training split (false: the transfer set alone)")


@dataclass(frozen=True)
class DomainConfig:
    """domain: a source-domain teacher teaching a target-domain student."""

    target_labels: bool = opt(False, "use the target's training labels in the student's CE (false: soft targets only)")
    source_labels: bool = opt(True, "mix the labeled source training images into the student's batches")
    finetune_epochs: int = opt(0, "fine-tune the source teacher on the labeled target training split first")
    finetune_lr: float | None = opt(None, "fine-tuning lr; None: teacher.lr / 10")


@dataclass(frozen=True)
class DkdConfig:
    """dkd: the weights of its two terms (defaults: the paper's CIFAR settings)."""

    alpha: float = opt(1.0, "weight α of the target-class term TCKD")
    beta: float = opt(8.0, "weight β of the non-target-class term NCKD (the paper's CIFAR-100 value)")


@dataclass(frozen=True)
class DistConfig:
    """dist: the weights of its relation losses (defaults: the paper's CIFAR settings)."""

    beta: float = opt(2.0, "weight β of the inter-class (per-sample) Pearson relation loss")
    gamma: float = opt(2.0, "weight γ of the intra-class (per-class, across the batch) Pearson relation loss")


@dataclass(frozen=True)
class DistillConfig:
    method: str = opt("kd", "registry name (`edgekd methods`)")
    temperature: float = opt(4.0, "T: softens both distributions in the soft term")
    alpha: float = opt(0.9, "weight of the soft term: (1-α)·CE + α·T²·KL (kd_sigmoid: λ)")
    baseline: bool = opt(True, "also train the same student without KD, identical recipe")
    select: Literal["best_val", "last"] = opt("best_val", "which epoch's weights become student.pt")
    allow_weak_teacher: bool = opt(False, "start KD even when a loaded teacher.checkpoint scores near chance on val")
    qat: QATConfig = opt(
        help="quantization-aware distillation after the float stage (standard and transfer flows)", factory=QATConfig
    )
    # the sections of the methods with keys of their own (see METHOD_SECTIONS)
    fitnets: FitnetsConfig = opt(help="fitnets' keys", factory=FitnetsConfig)
    takd: TakdConfig = opt(help="takd's keys", factory=TakdConfig)
    ensemble: EnsembleConfig = opt(help="ensemble's keys", factory=EnsembleConfig)
    transfer: TransferConfig = opt(help="transfer's keys", factory=TransferConfig)
    domain: DomainConfig = opt(help="domain's keys", factory=DomainConfig)
    dkd: DkdConfig = opt(help="dkd's keys", factory=DkdConfig)
    dist: DistConfig = opt(help="dist's keys", factory=DistConfig)


# distill's method sections: section name (the method's name) → its dataclass
METHOD_SECTIONS: dict[str, type] = {
    name: tp for name, tp in get_type_hints(DistillConfig).items() if dataclasses.is_dataclass(tp) and name != "qat"
}

# The flat keys of configs written before the method sections (every run folder's config.yaml up
# to then): old distill key → its place now. They keep loading, with a note.
MOVED_DISTILL_KEYS: dict[str, str] = {
    "hint_layer": "fitnets.hint_layer",
    "guided_layer": "fitnets.guided_layer",
    "hint_mode": "fitnets.hint_mode",
    "hint_epochs": "fitnets.hint_epochs",
    "hint_weight": "fitnets.hint_weight",
    "hint_regressor": "fitnets.hint_regressor",
    "assistants": "takd.assistants",
    "ta_select": "takd.ta_select",
    "teachers": "ensemble.teachers",
    "teacher_seeds": "ensemble.teacher_seeds",
    "teacher_checkpoints": "ensemble.teacher_checkpoints",
    "transfer_set": "transfer.set",
    "transfer_labeled": "transfer.labeled",
    "target_labels": "domain.target_labels",
    "source_labels": "domain.source_labels",
    "finetune_epochs": "domain.finetune_epochs",
    "finetune_lr": "domain.finetune_lr",
    "dkd_alpha": "dkd.alpha",
    "dkd_beta": "dkd.beta",
    "dist_beta": "dist.beta",
    "dist_gamma": "dist.gamma",
}


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = opt("auto", "auto (CUDA when present) | cpu | cuda | cuda:N")
    amp: Literal["auto", "bf16", "fp16", "off"] = opt(
        "auto", "mixed precision; auto: bf16 (or fp16) on CUDA, off on CPU; bf16 also runs on CPUs that have it"
    )
    deterministic: bool = opt(True, "deterministic algorithms (CPU runs are bit-reproducible)")
    threads: int | None = opt(None, "torch intra-op threads; None: torch's default")
    channels_last: bool | None = opt(
        None, "NHWC memory format for models and batches; None: on (off for a model whose forward rejects NHWC)"
    )
    compile_teacher: bool = opt(False, "torch.compile the frozen teacher (inference only)")
    compile_student: bool = opt(False, "torch.compile the student's training forward")
    teacher_cache: bool = opt(
        True,
        "compute the teacher's outputs once and reuse them when the student's inputs repeat (augment none, or "
        "data.views)",
    )
    teacher_cache_dir: str | None = opt(
        None,
        "where the teacher's outputs are cached; None: RUN/teacher_cache (edgekd search shares one between its trials)",
    )


@dataclass(frozen=True)
class ExportConfig:
    models: tuple[str, ...] = opt(
        ("student", "teacher"), "which of the run's models go into the bundle (student, teacher, baseline)"
    )
    formats: tuple[str, ...] = opt(
        ("pytorch", "onnx", "tflite_fp32", "tflite_int8"),
        "student formats: pytorch, onnx, tflite_fp32, tflite_int8 (full integer), tflite_fp16, tflite_dynamic "
        "(dynamic range), tflite_int16x8 (int16 activations)",
    )
    teacher_formats: tuple[str, ...] = opt(
        ("pytorch", "onnx", "tflite_fp32"), "formats for the teacher (and baseline); [] leaves them out of the bundle"
    )
    backend: str = opt(
        "onnx2tf",
        "TFLite converter: onnx2tf (PyTorch → ONNX → TensorFlow → TFLite) or litert_torch (PyTorch → TFLite; pip "
        "install 'edgekd[litert]')",
    )
    opset: int = opt(17, f"ONNX opset ({MIN_OPSET} to {MAX_OPSET})")
    dynamic_batch: bool = opt(False, "ONNX with a dynamic batch dimension (TFLite stays batch 1)")
    calibration_samples: int = opt(
        300, f"training images used to calibrate int8 ranges (1 to {MAX_EXPORT_SAMPLES:,}; more than the data has: all)"
    )
    # min-max by measurement (benchmarks/quant.py, README "Calibration methods and 16×8"): on the
    # CIFAR-10 ResNet-8 student the three methods were within 0.2 point in agreement with float and
    # in accuracy, and min-max is the only one the default backend (onnx2tf) applies
    calibration_method: Literal["minmax", "percentile", "mse"] = opt(
        "minmax",
        "int8 activation ranges: minmax (extremes), percentile (0.01–99.99 %), mse (least rounding + clipping error); "
        "other than minmax needs backend litert_torch",
    )
    eval_samples: int = opt(
        500,
        f"held-out test images stored in eval.npz for on-device accuracy (1 to {MAX_EXPORT_SAMPLES:,}; more than the "
        "test split has: all)",
    )
    parity_samples: int | None = opt(
        2000,
        "test images for the parity check (a seeded, class-balanced sample; 2000 keeps a CIFAR-10 bundle's parity in "
        f"seconds; 1 to {MAX_EXPORT_SAMPLES:,}); None: the whole test split",
    )
    fp32_max_abs_diff: float = opt(2e-3, "bound on |logit − PyTorch logit| for fp32 formats (segmentation: per pixel)")
    min_top1_agreement: float = opt(
        0.99, "bound on top-1 agreement with PyTorch for every format (segmentation: pixel agreement of the masks)"
    )
    max_acc_drop: float = opt(
        0.005, "bound on test accuracy lost against PyTorch, 0.005 = half a point (segmentation: mean IoU lost)"
    )
    min_logit_snr_db: float = opt(
        20.0,
        "bound on the SNR of the logits against PyTorch's for int8/fp16/dynamic formats, in dB (per-image centered "
        "logits; int8 CIFAR-10 ResNet-8s measured 30.9 and 31.7 dB)",
    )
    max_class_share: float = opt(
        0.9,
        "classification: a model predicting one class for more than this share of the test images (and more than the "
        "labels' largest class) fails as collapsed; 1 disables",
    )
    qat: bool = opt(
        True,
        "with the student's tflite_int8: also the QAT student's int8 file (student_qat_int8.tflite) when the run has "
        "student_qat.pt; false leaves it out",
    )
    allow_parity_failure: bool = opt(False, "write the bundle and exit 0 even when a format is out of bounds")
    threads: int | None = opt(None, "threads for the parity runs; None: all cores")


@dataclass(frozen=True)
class DeployConfig:
    """``edgekd deploy`` (``--config FILE`` with a ``deploy:`` section, or ``--set deploy.KEY=VALUE``)."""

    # a step copies a bundle of a few MB and the sources over a LAN: minutes mean a hung link
    timeout_s: float = opt(300.0, "limit on each ssh/scp/rsync step (connect, copy, check, fetch), seconds")
    # the install builds a venv with pip on a Pi (minutes) and the bench times every model
    bench_timeout_s: float = opt(3600.0, "limit on the remote install and the remote bench, seconds")


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = opt(
        False,
        "also write per-epoch losses (and KD parts), accuracies and lr as TensorBoard scalars to RUN/tensorboard/ "
        "(pip install 'edgekd[tensorboard]'); metrics.jsonl stays the record",
    )


@dataclass(frozen=True)
class Config:
    name: str | None = opt(None, "run name; None: the config file's stem")
    seed: int = opt(0, "seeds model init, data order and augmentation")
    data: DataConfig = opt(
        help="the dataset and how it is split and fed (the TARGET domain for distill.method=domain)", factory=DataConfig
    )
    source: DataConfig | None = opt(
        None, "domain: the SOURCE dataset the teacher learns on, same keys as data (e.g. {name: digits})"
    )
    teacher: StageConfig = opt(help="the teacher and its recipe", factory=lambda: StageConfig(arch="resnet20"))
    student: StageConfig = opt(help="the student and its recipe (also the baseline's)", factory=StageConfig)
    distill: DistillConfig = opt(help="how the student learns from the teacher", factory=DistillConfig)
    runtime: RuntimeConfig = opt(help="device, precision, determinism", factory=RuntimeConfig)
    export: ExportConfig = opt(help="what `edgekd export` writes and the parity bounds it checks", factory=ExportConfig)
    deploy: DeployConfig = opt(help="`edgekd deploy`: time limits of the remote steps", factory=DeployConfig)
    log: LogConfig = opt(help="optional extra training logs (metrics.jsonl is always written)", factory=LogConfig)


def describe_keys(obj: Any = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every leaf key of the schema, in declaration order."""
    obj = Config() if obj is None else obj
    rows = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe_keys(value, f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(to_dict(value)), f.metadata.get("help", "")))
    return rows


# --------------------------------------------------------------------------------------------
# dict ↔ dataclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp``; return it converted (list→tuple, int→float…)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"config: {key}: {value!r} is not {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        hint = did_you_mean(str(value), [str(c) for c in choices])
        raise ConfigError(f"config: {key}: {value!r} is not one of {', '.join(map(str, choices))}{hint}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config: {key} must be a mapping of keys, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"config: {key} expects a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config: {key} expects a mapping, got {value!r}")
        bad = non_plain(value)
        if bad is not None:
            raise ConfigError(f"config: {key}{bad}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config: {key} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config: {key} expects an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config: {key} expects a number, got {value!r}")
        return finite(number, f"config: {key}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config: {key} expects a string, got {value!r}")
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # a schema bug, not user input


def finite(number: float, what: str) -> float:
    """``number`` unless it is NaN or ±inf, which no setting means: a NaN temperature or lr trains
    NaN weights and every comparison with it is false, so bounds and checks pass silently."""
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {number}")
    return number


def non_plain(value: Any, where: str = "") -> str | None:
    """Where ``value`` holds something other than a plain JSON value (str, finite number, bool,
    None, lists, string-keyed mappings), as `` ...: why``; None when it is plain. Model kwargs from a
    config or a checkpoint must be plain: they are handed to a model factory as they are."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: {value} is not a finite number"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            bad = non_plain(item, f"{where}[{i}]")
            if bad is not None:
                return bad
        return None
    if isinstance(value, Mapping):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"{where}: key {k!r} is not a string"
            bad = non_plain(item, f"{where}.{k}")
            if bad is not None:
                return bad
        return None
    return f"{where}: a {type(value).__name__} is not a plain value (string, number, true/false, null, list or mapping)"


def _unknown_key(key: str, known: Sequence[str], prefix: str, also: Sequence[str] = ()) -> ConfigError:
    """``also``: deeper keys worth suggesting that are not this section's own (not listed as valid)."""
    hint = did_you_mean(key, [*known, *also], prefix)
    return ConfigError(f"config: unknown key '{prefix}{key}'{hint} (valid: {', '.join(known)})")


def _move_flat_distill_keys(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``distill`` with its pre-section flat keys (``hint_layer``) moved to their sections
    (``fitnets.hint_layer``), and one note on stderr naming them. The same key given both ways with
    different values is an error: which one was meant cannot be told."""
    moved = [k for k in data if k in MOVED_DISTILL_KEYS]
    if not moved:
        return dict(data)
    out = {k: v for k, v in data.items() if k not in MOVED_DISTILL_KEYS}
    for key in moved:
        section, name = MOVED_DISTILL_KEYS[key].split(".")
        node = out.get(section)
        if node is None:
            node = {}
        elif not isinstance(node, Mapping):
            raise ConfigError(f"config: {prefix}{section} must be a mapping of keys, got {node!r}")
        node = dict(node)
        if name in node and node[name] != data[key]:
            raise ConfigError(
                f"config: {prefix}{key} (the old name of {prefix}{section}.{name}) and {prefix}{section}.{name} "
                "are both given, with different values: keep only the new one"
            )
        node[name] = data[key]
        out[section] = node
    from edgekd.ui import log

    # an old run folder's config.yaml holds every flat key: name a few, count the rest
    shown = ", ".join(f"{prefix}{k} → {prefix}{MOVED_DISTILL_KEYS[k]}" for k in moved[:3])
    more = f" and {len(moved) - 3} more" if len(moved) > 3 else ""
    log(f"note: old flat keys moved to their method's section: {shown}{more} (the old names still load)")
    return out


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping, validating every key."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    deeper: list[str] = []
    if cls is DistillConfig:
        data = _move_flat_distill_keys(data, prefix)
        # a misspelt old flat key is matched against the sections' keys: 'hint_layr' → 'distill.fitnets.hint_layer'
        deeper = [f"{section}.{f.name}" for section, sc in METHOD_SECTIONS.items() for f in dataclasses.fields(sc)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(str(key), names, prefix, deeper)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A plain dict/list tree (tuples as lists) that YAML and JSON can write."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------------
# YAML


def _yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 booleans: only true/false are booleans, so choices such as
    ``runtime.amp=off`` stay the strings they look like (YAML 1.1 reads on/off/yes/no as booleans)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    try:
        data = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError("config nests its lists or mappings too deeply to read") from None
    _check_expanded_size(data)
    return data


# Values a config may hold once YAML's aliases are expanded: the largest edgekd config has a few
# hundred. Ten nested aliases of nine items each (a 400-byte file) expand to 9¹⁰ values, which
# every later walk (the plain-values check, the saved config) would take minutes and gigabytes over.
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 64  # edgekd's configs nest 4 levels; kwargs of a user's model a few more


def _check_expanded_size(data: Any) -> None:
    """Refuse a YAML document whose aliases expand beyond :data:`MAX_CONFIG_VALUES` values; the
    walk stops at that count, so a bomb costs no more than a config of that size."""
    count, stack = 0, [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"config holds over {MAX_CONFIG_VALUES:,} values once its YAML aliases (*name) are expanded"
            )
        if depth > MAX_CONFIG_DEPTH:  # later walks recurse: refused here whatever the recursion limit
            raise ConfigError("config nests its lists or mappings too deeply to read")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in (*node.keys(), *node.values()))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


# --------------------------------------------------------------------------------------------
# overrides


def check_overrides(overrides: object) -> list[str]:
    """``overrides`` (``set=`` of the library calls, ``--set`` of the CLI) as a list of
    ``KEY=VALUE`` strings (None: none); a lone string (which would be read one character at a
    time) or a non-string entry is one :class:`~edgekd.errors.ArgumentError` line."""
    from edgekd.errors import ArgumentError

    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise ArgumentError(f"set must be a list of KEY=VALUE strings, got the string {overrides!r}: pass it in a list")
    if not isinstance(overrides, (list, tuple)):
        raise ArgumentError(f"set must be a list of KEY=VALUE strings, got {type(overrides).__name__}")
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise ArgumentError(f"set must be a list of KEY=VALUE strings; {bad[0]!r} is a {type(bad[0]).__name__}")
    return list(overrides)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``distill.temperature=8`` → (["distill", "temperature"], 8). Values are YAML scalars/lists."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot read value {raw!r}") from None
    return key.split("."), value


def _apply(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid YAML (not UTF-8 text: byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = _yaml_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at the top level")
    return data


def _drop_stale_kwargs(tree: dict[str, Any], parsed: list[tuple[list[str], Any]]) -> None:
    """``--set student.arch=X`` replaces the architecture the file's ``student.kwargs`` were written
    for (``width`` of one model is an error, or a different model, in another): those kwargs are
    dropped, with a note, unless the overrides also give the stage's kwargs."""
    from edgekd.ui import log

    for stage in ("teacher", "student"):
        section = tree.get(stage)
        if not isinstance(section, dict) or not section.get("kwargs"):
            continue
        new_arch = [v for k, v in parsed if k == [stage, "arch"]]
        kwargs_given = any(k[:2] == [stage, "kwargs"] for k, _ in parsed)
        if new_arch and new_arch[-1] != section.get("arch") and not kwargs_given:
            log(
                f"note: {stage}.arch changed to {new_arch[-1]!r}: dropping {stage}.kwargs {section['kwargs']!r}, "
                f"written for {section.get('arch')!r} (give --set {stage}.kwargs=... to keep some)"
            )
            section = tree[stage] = dict(section)
            del section["kwargs"]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults ← YAML file ← overrides, validated into a frozen :class:`Config`."""
    from edgekd.paths import as_path

    path = as_path(path, "config", optional=True)
    return _config_from(load_yaml(path) if path else {}, path, overrides)


def _config_from(tree: dict[str, Any], path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """A YAML file's ``tree`` (from ``path``) with ``overrides`` applied, validated."""
    parsed = [parse_override(text) for text in check_overrides(overrides)]
    _drop_stale_kwargs(tree, parsed)
    for keys, value in parsed:
        _apply(tree, keys, value)
    config = from_dict(Config, tree)
    if config.name is None and path is not None:
        config = dataclasses.replace(config, name=Path(path).stem)
    validate(config)
    return config


# sections every config.yaml edgekd saves holds (dump_yaml writes them all, in every version)
SAVED_SECTIONS = ("data", "teacher", "student")


def load_saved_config(path: str | Path) -> Config:
    """The resolved config edgekd saved beside a run or in a bundle (``config.yaml``), as
    :func:`load_config` reads it, once the file holds the sections edgekd writes: an emptied or cut
    file read as the defaults, and the error that followed named the default model, not the file."""
    from edgekd.paths import as_path

    path = as_path(path, "config")
    tree = load_yaml(path)
    missing = [k for k in SAVED_SECTIONS if not isinstance(tree.get(k), dict)]
    if missing:
        raise ConfigError(
            f"{path} is incomplete: no {', '.join(missing)} section (edgekd saves every section; the file was "
            "emptied or cut short)"
        )
    return _config_from(tree, path)


def _check_stats(s: StageConfig, stage: str) -> None:
    """``mean``/``std``: both or neither, one value per channel, pixels on the 0-1 scale."""
    if (s.mean is None) != (s.std is None):
        raise ConfigError(f"config: {stage}.mean and {stage}.std go together (give both, one value per input channel)")
    if s.mean is None:
        return
    if stage == "teacher" and s.checkpoint is None:
        raise ConfigError(
            "config: teacher.mean/teacher.std describe a loaded teacher: give teacher.checkpoint too (a teacher "
            "trained here uses the data's statistics)"
        )
    if len(s.mean) != len(s.std) or not s.mean:
        raise ConfigError(
            f"config: {stage}.mean has {len(s.mean)} values and {stage}.std {len(s.std)}: one per input channel each"
        )
    if not all(0.0 <= m <= 1.0 for m in s.mean):
        raise ConfigError(
            f"config: {stage}.mean values are on the 0-1 pixel scale (ImageNet: [0.485, 0.456, 0.406]), got "
            f"{list(s.mean)}"
        )
    if not all(0.0 < v <= 1.0 for v in s.std):
        raise ConfigError(
            f"config: {stage}.std values must be in (0, 1] (ImageNet: [0.229, 0.224, 0.225]), got {list(s.std)}"
        )


# Data sizes a config may ask for (validate_data): a batch of 65,536 224-px RGB images is already
# 39 GB of float32; 1,000 augmented views of CIFAR-10 cache 2 GB of teacher logits; 10⁶ generated
# shapes images are 3 GB; 64 decoding processes outnumber the cores of any machine edgekd trains on.
MAX_BATCH = 65_536
MAX_VIEWS = 1000
MAX_SAMPLES = 1_000_000
MAX_WORKERS = 64
# Epochs (and other step counts) of any stage: 10⁵ CIFAR-10 epochs are years on this hardware, so
# more is an exponent too many, said before the run starts rather than never finishing.
MAX_EPOCHS = 100_000

# (key, low, high, integer, low_open) of the numbers the checks below leave unbounded: every number a
# config holds has a range, so a lost minus sign or an exponent too many is one line before any
# work, not a NaN loss an hour in
_SEED = (0, 2**32 - 1, True, False)
# distill.temperature, and each of the sweep's --temperatures. Below 0.01 no method's soft term
# works: T²·KL (and DKD's, DIST's) shrinks to nothing by about 1e-6 and the logits divided by T
# overflow float32 (a NaN loss) by about 1e-37; from 0.01 every soft term and its gradient stay
# finite with logits of magnitude 200, and at 0.01 a logit gap of 0.1 already weighs e^10 ≈ 22,000:1,
# so a lower T would teach little more than the hard label.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 1000.0
_LR = (0.0, 100.0, False, True)
_WEIGHT = (0.0, 1e6, False, False)
_BOUNDS: tuple[tuple[str, float, float, bool, bool], ...] = (
    ("seed", *_SEED),
    ("data.split_seed", *_SEED),
    ("data.crop_padding", 0, 1024, True, False),
    ("data.memory_limit_gb", 0.0, float(1 << 20), False, True),
    *(
        bound
        for stage in ("teacher", "student")
        for bound in (
            (f"{stage}.lr", *_LR),
            (f"{stage}.momentum", 0.0, 1.0, False, False),
            (f"{stage}.weight_decay", 0.0, 1.0, False, False),
            (f"{stage}.gamma", 0.0, 10.0, False, True),
            (f"{stage}.warmup_epochs", 0, 100_000, True, False),
            (f"{stage}.epochs", 0 if stage == "teacher" else 1, MAX_EPOCHS, True, False),  # a teacher may load
            (f"{stage}.lookahead_steps", 0, MAX_EPOCHS, True, False),
            (f"{stage}.lr_end", 0.0, 1.0, False, False),
            (f"{stage}.warmup_start", 0.0, 1.0, False, False),
            (f"{stage}.lookahead_ramp", 0.0, 100.0, False, False),
            (f"{stage}.mixup", 0.0, 1000.0, False, False),
            (f"{stage}.cutmix", 0.0, 1000.0, False, False),
        )
    ),
    ("distill.temperature", MIN_TEMPERATURE, MAX_TEMPERATURE, False, False),
    ("distill.qat.lr", *_LR),
    ("distill.qat.epochs", 0, MAX_EPOCHS, True, False),
    ("distill.qat.observer_epochs", 1, MAX_EPOCHS, True, False),
    ("distill.qat.bn_epochs", 0, MAX_EPOCHS, True, False),
    ("distill.qat.calibration_batches", 1, MAX_EPOCHS, True, False),
    ("distill.fitnets.hint_epochs", 0, MAX_EPOCHS, True, False),
    ("distill.domain.finetune_epochs", 0, MAX_EPOCHS, True, False),
    ("distill.domain.finetune_lr", *_LR),
    ("distill.fitnets.hint_weight", *_WEIGHT),
    ("distill.dkd.alpha", *_WEIGHT),
    ("distill.dkd.beta", *_WEIGHT),
    ("distill.dist.beta", *_WEIGHT),
    ("distill.dist.gamma", *_WEIGHT),
    ("export.fp32_max_abs_diff", 0.0, 1e6, False, False),
    *((f"export.{key}_samples", 1, MAX_EXPORT_SAMPLES, True, False) for key in ("calibration", "eval", "parity")),
    ("export.max_acc_drop", 0.0, 1.0, False, False),
    ("deploy.timeout_s", 0.0, MAX_TIMEOUT_S, False, True),
    ("deploy.bench_timeout_s", 0.0, MAX_TIMEOUT_S, False, True),
    # torch refuses 0 and negatives only when the threads are set, after minutes of work
    ("runtime.threads", 1, MAX_THREADS, True, False),
    ("export.threads", 1, MAX_THREADS, True, False),
)


def _check_bounds(config: Config) -> None:
    for key, low, high, integer, low_open in _BOUNDS:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        check_number(
            f"config: {key}",
            value,
            integer=integer,
            low=low,
            high=high,
            low_open=low_open,
            optional=True,
            error=ConfigError,
        )
    for stage in ("teacher", "student"):
        for m in getattr(config, stage).milestones:
            check_number(f"config: {stage}.milestones", m, integer=True, low=1, high=100_000, error=ConfigError)
    for seed in config.distill.ensemble.teacher_seeds:
        key = "config: distill.ensemble.teacher_seeds"
        check_number(key, seed, integer=True, low=0, high=_SEED[1], error=ConfigError)


def validate(config: Config) -> None:
    """Checks across fields that types alone cannot express."""
    if config.name is not None and (config.name in ("", ".", "..") or any(c in config.name for c in "/\\\0")):
        # the default run folder is runs/<name>: a name with a path in it put it elsewhere
        raise ConfigError(f"config: name must be a plain folder name (no /, \\ or ..), got {config.name!r}")
    validate_data(config.data, "data")
    _check_bounds(config)
    for stage in ("teacher", "student"):
        s: StageConfig = getattr(config, stage)
        if not 0.0 < s.lookahead_alpha <= 1.0:  # lookahead_steps: _BOUNDS
            raise ConfigError(
                f"config: {stage}.lookahead_steps must be 0 (off) or more and {stage}.lookahead_alpha in (0, 1]"
            )
        if s.tta_translate and not s.tta_flip:
            raise ConfigError(f"config: {stage}.tta_translate adds to flip TTA: set {stage}.tta_flip too")
        if not 0.0 < s.bias_lr_scale <= 1000.0:
            raise ConfigError(f"config: {stage}.bias_lr_scale must be in (0, 1000], got {s.bias_lr_scale}")
        if not 0.0 <= s.label_smoothing < 1.0:
            raise ConfigError(f"config: {stage}.label_smoothing must be in [0, 1)")
        if s.bn_momentum is not None and not 0.0 < s.bn_momentum <= 1.0:
            raise ConfigError(
                f"config: {stage}.bn_momentum must be in (0, 1] (the new batch's weight; PyTorch's default 0.1) or "
                f"null for the model's own, got {s.bn_momentum}"
            )
        _check_stats(s, stage)
    dc = config.distill
    if config.teacher.epochs == 0 and config.teacher.checkpoint is None and not dc.ensemble.teacher_checkpoints:
        raise ConfigError("config: teacher.epochs is 0 and no teacher.checkpoint is given: nothing to teach with")
    e = config.export
    if not MIN_OPSET <= e.opset <= MAX_OPSET:
        raise ConfigError(f"config: export.opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {e.opset}")
    if e.calibration_method != "minmax" and e.backend != "litert_torch":
        raise ConfigError(
            f"config: export.calibration_method={e.calibration_method} needs export.backend=litert_torch (onnx2tf "
            "calibrates min-max)"
        )
    if not -200.0 <= e.min_logit_snr_db <= 200.0:
        raise ConfigError("config: export.min_logit_snr_db must be in [-200, 200] dB")
    if not 0.0 < e.max_class_share <= 1.0:
        raise ConfigError("config: export.max_class_share must be in (0, 1]")
    if not 0.0 <= e.min_top1_agreement <= 1.0 or e.max_acc_drop < 0 or e.fp32_max_abs_diff < 0:
        raise ConfigError("config: export bounds must be fractions (agreement in [0, 1]) and non-negative")
    if not 0.0 <= config.distill.alpha <= 1.0:
        raise ConfigError("config: distill.alpha must be in [0, 1]")
    ens = dc.ensemble
    if ens.teachers and ens.teacher_seeds and len(ens.teachers) != len(ens.teacher_seeds):
        raise ConfigError(
            f"config: distill.ensemble.teachers has {len(ens.teachers)} entries and distill.ensemble.teacher_seeds "
            f"{len(ens.teacher_seeds)}; give one seed per member"
        )
    if ens.teacher_checkpoints and (ens.teachers or ens.teacher_seeds):
        raise ConfigError(
            "config: distill.ensemble.teacher_checkpoints loads the ensemble; leave distill.ensemble.teachers and "
            "distill.ensemble.teacher_seeds empty"
        )
    if config.source is not None:
        validate_data(config.source, "source")


def validate_data(d: DataConfig, section: str) -> None:
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"config: {section}.val_fraction must be in [0, 1), got {d.val_fraction}")
    if not 0.0 < d.test_fraction < 1.0:
        raise ConfigError(f"config: {section}.test_fraction must be in (0, 1), got {d.test_fraction}")
    if (d.mean is None) != (d.std is None):
        raise ConfigError(f"config: set {section}.mean and {section}.std together (or neither)")
    if d.mean is not None and d.std is not None and len(d.mean) != len(d.std):
        raise ConfigError(f"config: {section}.mean and {section}.std must have one value per channel")
    if d.std is not None and any(s <= 0 for s in d.std):
        raise ConfigError(f"config: {section}.std values must be positive")
    # both bounds of every size: the upper ones size an allocation or a process count, so an exponent
    # too many is one line here, not a MemoryError traceback (or a fork of 10⁶ workers) minutes later
    for name, low, high, null in (
        ("image_size", 1, MAX_IMAGE_SIDE, "null: the data's own size"),  # a resize target: 10⁶ px is terabytes
        ("batch_size", 1, MAX_BATCH, ""),
        ("eval_batch_size", 1, MAX_BATCH, ""),
        ("samples", 10, MAX_SAMPLES, "null: the default"),  # shapes: images generated in memory
        ("train_limit", 1, 2**31 - 1, "null: all"),  # clamped to the data; only a typo goes past this
        ("views", 1, MAX_VIEWS, "null: fresh augmentation"),  # cached teacher outputs: views × images × classes
        ("view_seed", 0, 2**32 - 1, "null: the run's seed"),
        ("workers", 0, MAX_WORKERS, ""),
    ):
        check_number(
            f"config: {section}.{name}",
            getattr(d, name),
            integer=True,
            low=low,
            high=high,
            optional=True,
            why=null,
            error=ConfigError,
        )


def dump_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)


def changes(a: Config, b: Config) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in ``a``, value in ``b``) for every leaf key that differs."""

    def walk(x: Any, y: Any, prefix: str) -> list[tuple[str, Any, Any]]:
        if isinstance(x, dict) and isinstance(y, dict):
            keys = sorted(set(x) | set(y))
            return [c for key in keys for c in walk(x.get(key), y.get(key), f"{prefix}{key}.")]
        return [] if x == y else [(prefix.rstrip("."), x, y)]

    return walk(to_dict(a), to_dict(b), "")


def diff(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    return [key for key, _, _ in changes(a, b)]


def describe_changes(a: Config, b: Config) -> str:
    """``key: old → new`` for every changed key, comma-separated (empty when none changed)."""
    import json

    def show(v: Any) -> str:
        return json.dumps(v) if v is not None else "null"

    return ", ".join(f"{key}: {show(old)} → {show(new)}" for key, old, new in changes(a, b))


def named_archs(config: Config) -> frozenset[str]:
    """Every model architecture the config names (teacher, student, assistants, ensemble members):
    the user wrote these, so a checkpoint naming one of them may be rebuilt with it, even a
    ``module:factory`` one (a name written only inside a file never is)."""
    d = config.distill
    return frozenset({config.teacher.arch, config.student.arch, *d.takd.assistants, *d.ensemble.teachers})
