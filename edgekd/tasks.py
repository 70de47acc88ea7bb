"""What differs between tasks, in one place: targets, metric, parity checks and how they are shown.

``classification``
    one class index per image (int64 ``(N,)``), logits ``(N, K)``; metric: top-1 accuracy.
``segmentation`` (binary)
    one mask per image (uint8 ``(N, 1, H, W)``, 1 = foreground), one logit per pixel
    ``(N, 1, H, W)``; a pixel is predicted foreground when its logit is > 0 (σ > 0.5).
    Metric: **mean IoU** as in PASCAL VOC, over the two classes: ``mIoU = (IoU_fg + IoU_bg) / 2``
    with ``IoU_c = Σ|P_c ∩ G_c| / Σ|P_c ∪ G_c|`` summed over every pixel of the split (not per
    image). An image with an empty mask needs no special case: its pixels count as background,
    and any foreground predicted there enlarges the foreground union. (A per-image IoU would score
    such an image 0 for one stray pixel: a swing of 1/N of the metric, which made int8 parity and
    val selection noisy.) A class absent from both masks and predictions scores 1.
    ``fg_iou`` (the foreground IoU alone, the usual binary-mask figure) and pixel accuracy
    ``acc`` are reported beside it, so ``val_acc``/``test_acc`` exist for every task (pixel
    accuracy for segmentation; the selection metric is ``val_iou``).

Everything else (trainer, exporter, bench, TFLite Micro) asks the task instead of branching on
its name. This module imports numpy and the standard library only: the bench worker on a
Raspberry Pi and the TFLite Micro process use its numpy side. The torch side takes tensors and
needs no import.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekd.errors import EdgekdError, typed_first_line
from edgekd.registry import Registry

TASKS: Registry[type[Task]] = Registry("task")


def _nonfinite(targets: np.ndarray) -> str:
    """`` with N NaN or infinite values`` for float eval targets that hold any, else ``""``."""
    n = int((~np.isfinite(targets)).sum()) if np.issubdtype(targets.dtype, np.inexact) else 0
    return f" with {n} NaN or infinite values" if n else ""


class Task:
    """Base class; one subclass per task, registered in :data:`TASKS`."""

    name: ClassVar[str]
    metric: ClassVar[str]  # key of the headline / model-selection metric in records: val_<metric>
    metric_label: ClassVar[str]  # for axes and prose: "top-1 accuracy", "mean IoU"
    metric_short: ClassVar[str]  # for table headers: "acc", "mIoU"
    targets_key: ClassVar[str]  # what eval.npz calls the targets: "labels" or "masks"
    # (record key, table header) of the summary table's metric columns
    summary_columns: ClassVar[tuple[tuple[str, str], ...]]

    # -- data -------------------------------------------------------------------------------

    def auto_augment(self, channels: int, size: tuple[int, int]) -> str:
        """What ``data.augment=auto`` means for this task's data."""
        raise NotImplementedError

    def eval_targets(self, split: Any, index: np.ndarray) -> dict[str, np.ndarray]:
        """The targets of ``split[index]`` as stored in ``eval.npz`` (next to the NHWC images)."""
        raise NotImplementedError

    def targets(self, split: Any) -> np.ndarray:
        """The per-sample targets of a split, as the numpy metrics take them."""
        raise NotImplementedError

    def output_shape(self, num_classes: int, image_size: Sequence[int]) -> list[int]:
        """One image's output shape (batch dimension left out, NCHW where spatial)."""
        raise NotImplementedError

    def check_model_output(self, shape: Sequence[int], num_classes: int, image_size: Sequence[int], arch: str) -> None:
        """Raise :class:`TaskError` when a model's output (batch 1) is not what the task needs."""
        want = [1, *self.output_shape(num_classes, image_size)]
        if list(shape) != want:
            raise TaskError(
                f"model {arch!r} outputs shape {tuple(shape)}; {self.name} on this data needs "
                f"{tuple(want)}{self.model_hint}"
            )

    model_hint: ClassVar[str] = ""

    def check_images(self, images: np.ndarray, targets: np.ndarray) -> None:
        """Raise :class:`TaskError` when eval images are not what the export writes: uint8
        N×H×W×C, at least one, one per target. Whether H×W×C is the model's input is the caller's
        check (it needs the model's input shape)."""
        if images.dtype != np.uint8:  # float (NaN among them), int64, bool: no export writes them
            raise TaskError(
                f"eval images are {images.dtype} of shape {list(images.shape)}{_nonfinite(images)}; edgekd writes "
                "uint8 N×H×W×C"
            )
        if images.ndim != 4:
            raise TaskError(f"eval images have shape {list(images.shape)}; edgekd writes uint8 N×H×W×C (4 dimensions)")
        if len(images) == 0:
            raise TaskError("eval data has no images")
        if targets.ndim and len(targets) != len(images):  # a 0-d target array: check_targets says so
            raise TaskError(f"{len(images)} eval images but {len(targets)} {self.targets_key} (one per image)")

    # -- torch side: training and evaluation -------------------------------------------------

    sum_names: ClassVar[tuple[str, ...]]  # what :meth:`eval_sums` returns, in order

    def eval_sums(self, logits: Any, targets: Any) -> Any:
        """A float64 1-D tensor of sums over the batch (:attr:`sum_names`), added up over batches and ranks."""
        raise NotImplementedError

    def eval_metrics(self, sums: Sequence[float], n: int) -> tuple[float, dict[str, float]]:
        """(mean loss, {metric: value}) from the summed :meth:`eval_sums` of ``n`` samples."""
        raise NotImplementedError

    def train_counts(self, logits: Any, targets: Any) -> tuple[Any, Any]:
        """(correct, counted) of one training batch, for the running train accuracy."""
        raise NotImplementedError

    def format_metrics(self, metrics: dict[str, float]) -> str:
        """The metrics of one evaluation for a log line."""
        raise NotImplementedError

    # -- numpy side: parity, bench, TFLite Micro ---------------------------------------------

    def scores(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """{metric: value} of float model outputs ``(N, …)`` against targets."""
        raise NotImplementedError

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The headline metric (what a bench row's ``accuracy`` holds)."""
        return self.scores(outputs, targets)[self.metric]

    def parity_metrics(self, outputs: np.ndarray, reference: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """An exported model's outputs against the PyTorch reference and the targets."""
        raise NotImplementedError

    # what the parity bounds read for this task: (metrics key, label) of the decision agreement,
    # and (reference key, exported key, label) of the metric whose drop is bounded
    agreement: ClassVar[tuple[str, str]]
    metric_drop: ClassVar[tuple[str, str, str]]

    def parity_problems(self, exact: bool, metrics: dict[str, Any], bounds: Any) -> list[str]:
        """Why an exported file fails its bounds (empty when it passes). The same three bounds for
        every task: max |Δlogit| (fp32 formats), agreement of the decisions, drop of the metric."""
        problems = []
        for key, whose in (("nonfinite", "outputs"), ("reference_nonfinite", "PyTorch reference logits")):
            if metrics.get(key):
                problems.append(f"{metrics[key]} {whose} are NaN or infinite")
        if exact and metrics["max_abs_diff"] is not None and metrics["max_abs_diff"] > bounds.fp32_max_abs_diff:
            problems.append(f"max |Δlogit| {metrics['max_abs_diff']:.3g} > {bounds.fp32_max_abs_diff:g}")
        key, label = self.agreement
        if metrics[key] < bounds.min_top1_agreement:
            problems.append(f"{label} {100 * metrics[key]:.2f}% < {100 * bounds.min_top1_agreement:.2f}%")
        ref_key, got_key, drop_label = self.metric_drop
        drop = metrics[ref_key] - metrics[got_key]
        if drop > bounds.max_acc_drop:
            problems.append(f"{drop_label} drop {100 * drop:.2f} points > {100 * bounds.max_acc_drop:.2f}")
        # the outputs themselves, not only the decisions: a model whose decisions are all alike
        # (collapsed) agrees with PyTorch on every image however distorted its logits are
        snr = metrics.get("logit_snr_db")
        if not exact and snr is not None and snr < bounds.min_logit_snr_db:
            problems.append(
                f"logit SNR {snr:.1f} dB < {bounds.min_logit_snr_db:g} dB (max |Δlogit| {metrics['max_abs_diff']:.3g})"
            )
        problems += self.collapse_problems(metrics, bounds)
        return problems

    def collapse_problems(self, metrics: dict[str, Any], bounds: Any) -> list[str]:
        """Why the predictions look collapsed onto (nearly) one decision; empty when they do not."""
        return []

    parity_headers: ClassVar[tuple[str, ...]]

    def parity_cells(self, metrics: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def check_eval(self, images: np.ndarray, targets: np.ndarray, num_classes: int) -> None:
        """Raise :class:`TaskError` saying how eval targets do not fit the images or the model."""
        raise NotImplementedError

    def check_targets(self, images: np.ndarray, targets: np.ndarray) -> None:
        """Raise :class:`TaskError` when eval targets are malformed whatever the model: what the bench
        refuses before measuring (:meth:`check_eval` adds what depends on the model)."""

    def check_outputs(self, outputs: np.ndarray, targets: np.ndarray, num_classes: int) -> str | None:
        """Why a model's outputs cannot be scored against ``targets`` (None when they can)."""
        raise NotImplementedError

    def sample_label(self, targets: np.ndarray) -> int:
        """The expected class of ``targets[0]`` for the MCU self-test header (-1: none)."""
        return -1

    def row_fields(self, scores: dict[str, float]) -> dict[str, float]:
        """Fields a bench row adds beside ``accuracy_frac`` (which holds the headline metric)."""
        return {}


class TaskError(EdgekdError):
    """Data, targets or a model that do not fit the task."""


def read_eval(path: str | Path, targets: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(images, targets) of an ``eval.npz``-style file as stored (no pickles); ``targets`` names
    them (:attr:`Task.targets_key`). What they must be is :meth:`Task.check_images`' check; a
    truncated or altered file, or one without those arrays, is one :class:`TaskError` line."""
    try:
        with np.load(path) as data:
            return data["images"], data[targets]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TaskError(
            f"cannot read eval data {Path(path).name}: {typed_first_line(exc)} (needs 'images' and '{targets}')"
        ) from None


def get_task(name: str | Task | None) -> Task:
    """The task object for a name (None: classification, what data without a task is)."""
    if isinstance(name, Task):
        return name
    return TASKS.get(name or "classification")()


def task_for_targets(targets_key: str) -> Task:
    """The task whose eval data names its targets ``targets_key`` (``labels``, ``masks``)."""
    for _, cls in TASKS.items():
        if cls.targets_key == targets_key:
            return cls()
    raise TaskError(f"no task has eval targets called {targets_key!r}")


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


SNR_CAP_DB = 200.0  # reported for outputs equal to the reference (JSON has no infinity)


def logit_snr_db(outputs: np.ndarray, reference: np.ndarray, center: bool) -> float:
    """10·log10(Σ reference² / Σ (outputs − reference)²) over all images and outputs, in dB.

    ``center``: subtract each image's mean logit from both first, so that a constant offset,
    which changes no softmax, neither counts as signal nor as error (class logits)."""
    out, ref = _flat(outputs).astype(np.float64), _flat(reference).astype(np.float64)
    if center:
        out, ref = out - out.mean(1, keepdims=True), ref - ref.mean(1, keepdims=True)
    noise, signal = float(((out - ref) ** 2).sum()), float((ref**2).sum())
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return round(min(SNR_CAP_DB, max(-SNR_CAP_DB, 10.0 * np.log10(signal / noise))), 3)


def _diffs(outputs: np.ndarray, reference: np.ndarray, center: bool = False) -> dict[str, Any]:
    """max/mean |Δlogit|, and how many outputs (and reference logits) are NaN or ±inf: with any,
    the differences are undefined (None; every comparison with NaN is false, so a NaN difference
    would pass its bound) and the format fails (:meth:`Task.parity_problems`)."""
    bad = int((~np.isfinite(outputs)).sum()), int((~np.isfinite(reference)).sum())
    if any(bad):
        return {
            "max_abs_diff": None,
            "mean_abs_diff": None,
            "logit_snr_db": None,
            "nonfinite": bad[0],
            "reference_nonfinite": bad[1],
        }
    diff = np.abs(_flat(outputs).astype(np.float64) - _flat(reference).astype(np.float64))
    return {
        "max_abs_diff": float(f"{diff.max():.6g}"),
        "mean_abs_diff": float(f"{diff.mean():.6g}"),
        "logit_snr_db": logit_snr_db(outputs, reference, center),
    }


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    metric = "acc"
    metric_label = "top-1 accuracy"
    metric_short = "acc"
    targets_key = "labels"
    summary_columns = (("val_acc", "val acc %"), ("test_acc", "test acc %"))
    parity_headers = ("max |Δlogit|", "logit SNR dB", "top-1 agree %", "test acc %")
    agreement = ("top1_agreement", "top-1 agreement")
    metric_drop = ("reference_acc", "test_acc", "accuracy")
    sum_names = ("loss", "correct")

    def auto_augment(self, channels, size):
        # random crop + flip for colour images of any size from 16 px on (natural images: the
        # CIFAR/SVHN recipe, and a 64×64 or 224×224 photo set needs it as much); none for
        # grayscale or tiny data (digits-like: a flip turns a 2 into another glyph, a crop of 8×8
        # loses the stroke)
        return "crop_flip" if channels == 3 and min(size) >= 16 else "none"

    def eval_targets(self, split, index):
        return {"labels": split.labels[index]}

    def targets(self, split):
        return split.labels

    def output_shape(self, num_classes, image_size):
        return [num_classes]

    def eval_sums(self, logits, targets):
        import torch.nn.functional as F

        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        correct = (logits.argmax(1) == targets).sum()
        return _stack(logits.device, loss, correct)

    def eval_metrics(self, sums, n):
        loss, correct = sums
        return loss / max(n, 1), {"acc": correct / max(n, 1)}

    def train_counts(self, logits, targets):
        return (logits.detach().argmax(1) == targets).sum(), (targets >= 0).sum()  # -1 (unlabeled) never counts

    def format_metrics(self, metrics):
        return f"{metrics['acc']:.4f}"

    def scores(self, outputs, targets):
        return {"acc": float((outputs.argmax(1) == targets).mean())}

    def parity_metrics(self, outputs, reference, targets):
        pred, ref_pred = outputs.argmax(1), reference.argmax(1)
        top = np.bincount(pred, minlength=outputs.shape[1])
        return {
            "n": int(len(targets)),
            "test_acc": round(float((pred == targets).mean()), 6),
            "reference_acc": round(float((ref_pred == targets).mean()), 6),
            "top1_agreement": round(float((pred == ref_pred).mean()), 6),
            **_diffs(outputs, reference, center=True),
            # the most predicted class and its share of the images, beside the labels' largest share
            "top_class": int(top.argmax()),
            "top_class_share": round(float(top.max() / max(len(pred), 1)), 6),
            "label_top_share": round(float(np.bincount(targets).max() / max(len(targets), 1)), 6)
            if len(targets)
            else 0.0,
        }

    def collapse_problems(self, metrics, bounds):
        share, label_share = metrics["top_class_share"], metrics["label_top_share"]
        if share <= max(bounds.max_class_share, label_share):
            return []
        return [
            f"COLLAPSED: class {metrics['top_class']} for {100 * share:.1f}% of the {metrics['n']} images (the labels' "
            "largest "
            f"class is {100 * label_share:.1f}%; bound {100 * bounds.max_class_share:g}%): agreement with PyTorch "
            "proves nothing"
        ]

    def parity_cells(self, m):
        snr = m.get("logit_snr_db")
        return [
            _shown(m["max_abs_diff"]),
            "—" if snr is None else f"{snr:.1f}",
            f"{100 * m['top1_agreement']:.2f}",
            f"{100 * m['test_acc']:.2f}",
        ]

    def check_eval(self, images, targets, num_classes):
        self.check_targets(images, targets)
        # in range depends on the model (its number of classes): each row checks it, not the up-front check
        if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
            raise TaskError(
                f"eval labels span {int(targets.min())}…{int(targets.max())} but the model has {num_classes} classes"
            )

    def check_targets(self, images, targets):
        if targets.ndim != 1 or len(targets) != len(images):
            raise TaskError(
                f"eval labels have shape {list(targets.shape)}, the images {list(images.shape)}: expected "
                f"{len(images)} labels (one per image)"
            )
        # float labels: NaN passes the range check (every comparison is false) and matches no class,
        # a quietly lower accuracy; bool is no class index either
        if not np.issubdtype(targets.dtype, np.integer):
            raise TaskError(f"eval labels must be integer class indices, got {targets.dtype}{_nonfinite(targets)}")

    def check_outputs(self, outputs, targets, num_classes):
        if outputs.ndim != 2 or outputs.shape[1] != num_classes:
            return f"model outputs shape {list(outputs.shape[1:])} per image, expected {num_classes} class scores"
        return None

    def sample_label(self, targets):
        return int(targets[0])


def _stack(device: Any, *values: Any) -> Any:
    """Tensors and numbers as one float64 vector on ``device`` (float64: pixel counts of a large
    test split pass float32's 2^24 exact integers)."""
    import torch

    return torch.stack([torch.as_tensor(v, device=device).to(torch.float64) for v in values])


def iou_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[∩ foreground, ∪ foreground, ∩ background, ∪ background] pixel counts of boolean arrays."""
    p, t = pred.astype(bool), truth.astype(bool)
    return np.array([(p & t).sum(), (p | t).sum(), (~p & ~t).sum(), (~p | ~t).sum()], dtype=np.float64)


def iou_from_counts(counts) -> dict[str, float]:
    """{"iou": mean of both classes' IoU, "fg_iou": foreground IoU} from :func:`iou_counts` sums."""
    inter_fg, union_fg, inter_bg, union_bg = counts
    fg = inter_fg / union_fg if union_fg else 1.0  # no foreground anywhere, none predicted: perfect
    bg = inter_bg / union_bg if union_bg else 1.0
    return {"iou": float((fg + bg) / 2), "fg_iou": float(fg)}


def mean_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """The mean IoU of boolean predicted and true masks (any shape, pixels pooled)."""
    return iou_from_counts(iou_counts(pred, truth))["iou"]


@TASKS.register("segmentation")
class Segmentation(Task):
    """Binary masks, one sigmoid logit per pixel (see the module docstring for mean IoU)."""

    name = "segmentation"
    metric = "iou"
    metric_label = "mean IoU"
    metric_short = "mIoU"
    targets_key = "masks"
    summary_columns = (
        ("val_iou", "val mIoU %"),
        ("test_iou", "test mIoU %"),
        ("test_fg_iou", "test fg IoU %"),
        ("test_acc", "test pixel acc %"),
    )
    parity_headers = ("max |Δlogit|", "pixel agree %", "mask IoU %", "test mIoU %")
    # the classification bounds, read per pixel: agreement of the mask decisions, drop of the mIoU
    agreement = ("pixel_agreement", "pixel agreement")
    metric_drop = ("reference_iou", "test_iou", "mIoU")
    # loss: per image mean BCE, summed over images; then the iou_counts of the batch
    sum_names = ("loss", "correct_pixels", "pixels", "inter_fg", "union_fg", "inter_bg", "union_bg")
    model_hint = ": one logit per pixel at input resolution (a U-Net: `edgekd models 'unet*'`)"

    def auto_augment(self, channels, size):
        # masks move with their images, so crops and flips never corrupt a target; shapes and
        # scenes have no preferred left/right
        return "crop_flip"

    def eval_targets(self, split, index):
        return {"masks": np.ascontiguousarray(split.masks[index, 0])}  # (N, H, W), like the NHWC images

    def targets(self, split):
        return split.masks

    def output_shape(self, num_classes, image_size):
        return [num_classes, int(image_size[0]), int(image_size[1])]

    def eval_sums(self, logits, targets):
        import torch.nn.functional as F

        z, y = logits.float(), targets.float().view_as(logits)
        loss = (
            F.binary_cross_entropy_with_logits(z, y, reduction="none").flatten(1).mean(1).sum()
        )  # per image mean, summed
        pred, truth = z > 0, y > 0
        counts = (
            (pred & truth).sum(),
            (pred | truth).sum(),
            (~pred & ~truth).sum(),
            (~pred | ~truth).sum(),
        )  # as iou_counts
        return _stack(z.device, loss, (pred == truth).sum(), pred.numel(), *counts)

    def eval_metrics(self, sums, n):
        loss, correct, pixels, *counts = sums
        return loss / max(n, 1), {**iou_from_counts(counts), "acc": correct / max(pixels, 1)}

    def train_counts(self, logits, targets):
        return ((logits.detach() > 0) == (targets.view_as(logits) > 0)).sum(), targets.numel()  # per pixel

    def format_metrics(self, metrics):
        return f"mIoU {metrics['iou']:.4f}  fg IoU {metrics['fg_iou']:.4f}  pixel acc {metrics['acc']:.4f}"

    def scores(self, outputs, targets):
        pred, truth = _flat(outputs) > 0, _flat(targets) > 0
        return {**iou_from_counts(iou_counts(pred, truth)), "acc": float((pred == truth).mean())}

    def parity_metrics(self, outputs, reference, targets):
        pred, ref_pred, truth = _flat(outputs) > 0, _flat(reference) > 0, _flat(targets) > 0
        return {
            "n": int(len(targets)),
            "test_iou": round(mean_iou(pred, truth), 6),
            "reference_iou": round(mean_iou(ref_pred, truth), 6),
            "pixel_agreement": round(float((pred == ref_pred).mean()), 6),  # same mask pixel for pixel
            "mask_iou": round(mean_iou(pred, ref_pred), 6),  # mean IoU with PyTorch's masks as the truth
            "test_acc": round(float((pred == truth).mean()), 6),  # pixel accuracy
            "reference_acc": round(float((ref_pred == truth).mean()), 6),
            **_diffs(outputs, reference),
        }

    def parity_cells(self, m):
        return [
            _shown(m["max_abs_diff"]),
            f"{100 * m['pixel_agreement']:.2f}",
            f"{100 * m['mask_iou']:.2f}",
            f"{100 * m['test_iou']:.2f}",
        ]

    def check_eval(self, images, targets, num_classes):
        self.check_targets(images, targets)  # a mask does not depend on the model's classes

    def check_targets(self, images, targets):
        want = tuple(images.shape[:3])  # (N, H, W)
        if targets.ndim != 3 or tuple(targets.shape) != want:
            raise TaskError(
                f"eval masks have shape {list(targets.shape)}, the images {list(images.shape)}: expected masks of "
                f"{list(want)} (N×H×W)"
            )
        if targets.dtype != np.uint8:  # float masks: NaN is neither foreground nor background
            raise TaskError(f"eval masks must be uint8 0/1 (1 = foreground), got {targets.dtype}{_nonfinite(targets)}")
        if len(targets) and targets.max() > 1:
            raise TaskError(f"eval masks must be uint8 0/1 (1 = foreground), got values up to {int(targets.max())}")

    def row_fields(self, scores):
        return {"miou_frac": scores["iou"], "fg_iou_frac": scores["fg_iou"], "pixel_accuracy_frac": scores["acc"]}

    def check_outputs(self, outputs, targets, num_classes):
        per_image, want = outputs[0].size if len(outputs) else 0, targets[0].size * num_classes if len(targets) else 0
        if num_classes != 1 or per_image != want:
            return (
                f"model outputs shape {list(outputs.shape[1:])} per image, expected one logit per mask pixel ({want})"
            )
        return None
