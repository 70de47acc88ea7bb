"""The reference KD training loops that `train_speed.py` runs in their own processes.

* ``plain``: the loop the KD textbooks write — torchvision ImageFolder + transforms (RandomCrop with
  padding 4, horizontal flip, ToTensor, Normalize) in DataLoader workers, the teacher under no_grad,
  ``(1-α)·CE + α·T²·KL(batchmean)``, SGD.
* ``torchdistill``: torchdistill's DistillationBox driven the way its example
  (examples/torchvision/image_classification.py) drives it, with its CIFAR-10 KD sample config
  adapted to the same models, data, batch, optimizer and loss (its KDLoss weights CE by ``alpha``,
  so alpha = 1 − α and beta = α here). Runs in a separate virtual environment that has torchdistill.

Each prints one JSON line: {"system", "images", "train_s", "img_per_s", "loss"}. Only the training
loop is timed (data loading included, evaluation excluded), as for edgekd's ``train_s``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
SYSTEMS = ("plain", "torchdistill")


def _models(args, device):
    from edgekd.checkpoint import load_checkpoint, load_weights
    from edgekd.models import create_model

    torch.manual_seed(args.seed)
    teacher = create_model(args.teacher, 10, 3, (32, 32))
    # a missing, corrupt or mismatched file is one line (tensors only, as torch.load(weights_only=True))
    load_weights(teacher, load_checkpoint(args.teacher_weights)["state_dict"], args.teacher_weights)
    student = create_model(args.student, 10, 3, (32, 32))
    return teacher.to(device).eval(), student.to(device)


def _dataset(args):
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    try:
        full = datasets.ImageFolder(args.train_root, transform=tf)
    except FileNotFoundError as exc:  # no class folder, or no image in one: torchvision's one-line reason
        from edgekd.errors import DataError

        raise DataError(f"--train-root {args.train_root}: {exc}") from None
    pick = np.random.default_rng(args.seed).permutation(len(full))[: args.images]
    return torch.utils.data.Subset(full, pick.tolist())


def run_plain(args) -> dict:
    device = torch.device(args.device)
    teacher, student = _models(args, device)
    loader = torch.utils.data.DataLoader(
        _dataset(args),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    t, a = args.temperature, args.alpha
    images, loss_sum, start = 0, 0.0, time.perf_counter()
    for _ in range(args.epochs):
        student.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.no_grad():
                z_t = teacher(x)
            z_s = student(x)
            kd = F.kl_div(F.log_softmax(z_s / t, 1), F.softmax(z_t / t, 1), reduction="batchmean") * t * t
            loss = (1 - a) * F.cross_entropy(z_s, y) + a * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += x.shape[0]
            loss_sum += loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    return {"system": "plain", "images": images, "train_s": train_s, "img_per_s": images / train_s, "loss": loss_sum}


def run_torchdistill(args) -> dict:
    from torchdistill.core.distillation import get_distillation_box

    device = torch.device(args.device)
    teacher, student = _models(args, device)
    train_config = {
        "num_epochs": args.epochs,
        "train_data_loader": {
            "dataset_id": "cifar10/train",
            "sampler": {"class_or_func": torch.utils.data.RandomSampler, "kwargs": {}},
            "kwargs": {
                "batch_size": args.batch_size,
                "num_workers": args.workers,
                "drop_last": True,
                "pin_memory": device.type == "cuda",
            },
            "requires_supp": True,
        },
        "teacher": {
            "forward_proc": "forward_batch_only",
            "sequential": [],
            "frozen_modules": [],
            "requires_grad": False,
        },
        "student": {
            "forward_proc": "forward_batch_only",
            "adaptations": None,
            "sequential": [],
            "frozen_modules": [],
            "requires_grad": True,
        },
        "optimizer": {"key": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "kd": {
                        "criterion": {
                            "key": "KDLoss",
                            "kwargs": {
                                "student_module_path": ".",
                                "student_module_io": "output",
                                "teacher_module_path": ".",
                                "teacher_module_io": "output",
                                "temperature": args.temperature,
                                "alpha": 1 - args.alpha,
                                "beta": args.alpha,
                                "reduction": "batchmean",
                            },
                        },
                        "weight": 1.0,
                    }
                }
            },
        },
    }
    box = get_distillation_box(
        teacher, student, {"cifar10/train": _dataset(args)}, train_config, device, None, False, 1
    )
    images, loss_sum, start = 0, 0.0, time.perf_counter()
    for epoch in range(args.epochs):
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            sample_batch, targets = sample_batch.to(device), targets.to(device)
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
            images += sample_batch.shape[0]
            loss_sum += loss.item()
        box.post_epoch_process()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    return {
        "system": "torchdistill",
        "images": images,
        "train_s": train_s,
        "img_per_s": images / train_s,
        "loss": loss_sum,
    }


def main(argv: list[str] | None = None) -> int:
    from edgekd.cli import OneLineParser  # argparse's own errors as one line too, not its usage block

    p = OneLineParser(description=__doc__)
    p.add_argument("system", metavar="{" + ",".join(SYSTEMS) + "}")
    p.add_argument("--train-root", required=True, type=Path)
    p.add_argument("--teacher", required=True)
    p.add_argument("--teacher-weights", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from edgekd.errors import EdgekdError
    from edgekd.limits import out_of_range
    from edgekd.models.registry import MODELS
    from edgekd.registry import unknown_name_message

    problems = [unknown_name_message("system", args.system, SYSTEMS)] if args.system not in SYSTEMS else []
    problems += [MODELS.unknown_message(a) for a in (args.teacher, args.student) if a not in MODELS]
    if not args.train_root.is_dir():
        problems.append(f"--train-root {args.train_root}: no such folder")
    lows = {"images": 1, "epochs": 1, "batch_size": 1, "workers": 0}
    problems += out_of_range(args, at_least=lows, positive=("temperature",), fractions=("alpha",))
    if problems:
        print(f"speed_workers: error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        result = run_plain(args) if args.system == "plain" else run_torchdistill(args)
    except EdgekdError as exc:  # the teacher's weights (missing, corrupt, another model's), the images
        print(f"speed_workers: error: {exc}", file=sys.stderr)
        return 2
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
