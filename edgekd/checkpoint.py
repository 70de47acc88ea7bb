"""Model checkpoints: one model alone (no teacher, no KD wrapper), self-describing, written atomically.

A checkpoint records everything needed to rebuild and feed the model without the run that made it:
architecture and its arguments, input channels/size, classes, normalization statistics. Training
state (optimizer, epoch, history) travels only in ``*_last.pt`` under ``train_state``, which
:func:`load_model` ignores. Files are read with ``weights_only=True``, and a file is data, never
code: the architecture it names is looked up in the model registry. A ``module:factory`` name is
imported only when the caller (the user's config, flag or API argument) names that same factory;
a name written only inside the file never is, and the file's model arguments must be plain values.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.atomic import write_bytes
from edgekd.errors import CheckpointError, EdgekdError, first_line
from edgekd.tensorfile import first_nonfinite, load_tensors

FORMAT = "edgekd.model/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically. In a distributed run only rank 0 writes (the others hold the
    same weights), so this is a no-op on every other rank."""
    import torch
    import torch.distributed as dist

    # asked of torch.distributed, not of edgekd.train.distributed: a checkpoint sits below training
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "edgekd_version": __version__, **payload}, buf)
    write_bytes(path, buf.getvalue())


def model_payload(model, arch: str, kwargs: dict, data_info: dict, role: str, **extra: Any) -> dict[str, Any]:
    """The model-only part of a checkpoint (state dict copied to CPU)."""
    # contiguous: a channels-last model's weights are saved in the default layout
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    kwargs = dict(kwargs)
    padding = getattr(model, "padding_mode_name", None)  # registry CNNs: how strided convs pad
    if isinstance(padding, str):
        kwargs.setdefault("padding", padding)  # recorded, so a later default cannot change the model
    return {"role": role, "arch": arch, "kwargs": kwargs, "data": data_info, "state_dict": state, **extra}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint file; a corrupt or foreign file is a one-line error."""
    import pickle

    import torch

    from edgekd.paths import as_path

    path = as_path(path, "checkpoint")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = load_tensors(path)
    except pickle.UnpicklingError as exc:
        if "Unsupported operand" in str(exc):  # bytes that are no pickle at all (damaged, truncated)
            raise CheckpointError(f"corrupt or unreadable checkpoint {path}: not a PyTorch pickle stream") from None
        raise CheckpointError(_unpickling_message(path, exc)) from None
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail anywhere in the unpickler (KeyError, struct.error, ...)
        # the unpickler's own message can be a bare number (KeyError 174812789 for a text file): say what it was
        raise CheckpointError(
            f"corrupt or unreadable checkpoint {path}: not a PyTorch checkpoint "
            f"({type(exc).__name__} while reading it: {first_line(exc, 120)})"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not an edgekd checkpoint (it holds a {type(ckpt).__name__})")
    if ckpt.get("format") != FORMAT:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            check_finite(ckpt, path)
            return {"format": "state_dict", "state_dict": ckpt}
        raise CheckpointError(
            f"{path} is not an edgekd checkpoint (format {ckpt.get('format')!r}, expected {FORMAT!r})"
        )
    for key in ("arch", "data", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}: it is damaged or from an incompatible edgekd")
    check_description(ckpt, path)
    check_finite(ckpt["state_dict"], path)
    return ckpt


def check_finite(state_dict: dict[str, Any], path: str | Path) -> None:
    """Weights and buffers without NaN or ±inf, checked here, where every reader passes (export,
    bench and predict through :func:`load_model`, resume, a ``teacher.checkpoint``): such a model
    computes NaN for every image, and export only found out after converting it (a TypeError on an
    inf weight, a converter's garbled message on a NaN one)."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"checkpoint {path}: its state_dict is a {type(state_dict).__name__}, not tensors by name"
        )
    bad = first_nonfinite(state_dict)
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path}: {bad} holds NaN or infinite values; these weights compute nothing "
            "(a training that diverged?), so the file is not loaded"
        )


def check_description(ckpt: dict[str, Any], path: str | Path) -> None:
    """The model description every reader of a checkpoint relies on (shapes to rebuild the model,
    the statistics its input is normalized with) is of the kinds edgekd writes: one line otherwise,
    not an AttributeError deep in a reader, nor a division by a zero std."""
    from edgekd.limits import MAX_IMAGE_SIDE, check_number

    for key in ("data", "kwargs"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise CheckpointError(
                f"checkpoint {path} holds a model description that is not plain data "
                f"({key} must be a mapping, it is a {type(ckpt[key]).__name__})"
            )
    data = ckpt["data"]
    missing = [k for k in ("num_classes", "in_channels", "image_size", "mean", "std") if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks data.{', data.'.join(missing)}: it is damaged")

    def number(key: str, value: Any, **bounds: Any) -> None:
        check_number(f"checkpoint {path}: {key}", value, error=CheckpointError, **bounds)

    number("data.num_classes", data["num_classes"], integer=True, low=1)
    number("data.in_channels", data["in_channels"], integer=True, low=1)
    size = data["image_size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise CheckpointError(f"checkpoint {path}: data.image_size must be [height, width], got {repr(size):.100}")
    for i, side in enumerate(size):
        # bounded: the side is in no weight's shape, so the meta-device build cannot catch it, and
        # every example input, MAC count and QAT trace allocates an image of that size
        number(f"data.image_size[{i}]", side, integer=True, low=1, high=MAX_IMAGE_SIDE)
    for key in ("mean", "std"):
        stats = data[key]
        if not isinstance(stats, (list, tuple)) or len(stats) != data["in_channels"]:
            raise CheckpointError(
                f"checkpoint {path}: data.{key} must hold one number per input channel "
                f"({data['in_channels']}), got {stats!r}"[:300]
            )
        for i, value in enumerate(stats):
            # inputs are divided by std: a zero or negative one is no normalization a model was trained with
            number(f"data.{key}[{i}]", value, **({"low": 0, "low_open": True} if key == "std" else {}))


def _unpickling_message(path: Path, exc: BaseException) -> str:
    """What a file that ``weights_only`` refused is, and how to make one that loads. PyTorch's own
    message suggests ``weights_only=False``, which would run the file's code: never repeated."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    names = f" (it names {found.group(1)})" if found else ""
    return (
        f"{path} holds pickled Python objects, not only tensors{names}; edgekd loads tensors only, because "
        "unpickling objects can run code. Save the weights alone with torch.save(model.state_dict(), PATH), "
        "or use a checkpoint written by `edgekd distill`"
    )


def vouched(arch: str | Iterable[str] | None) -> frozenset[str]:
    """The architecture names a caller vouches for, as a set (``None``: none)."""
    if arch is None:
        return frozenset()
    return frozenset({arch} if isinstance(arch, str) else arch)


def checkpoint_arch(ckpt: dict[str, Any], path: str | Path, arch: str | Iterable[str] | None = None) -> str:
    """The architecture a checkpoint names, when edgekd may build it: a registered model, or a
    ``module:factory`` that the caller names too (``arch``). Raises a one-line error otherwise,
    before anything named in the file is imported."""
    from edgekd.config import non_plain
    from edgekd.models import MODELS

    name = ckpt.get("arch")
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint {path} names no architecture (arch is {type(name).__name__})")
    from edgekd.models.hub import is_hub_name

    if is_hub_name(name):
        pass  # torchvision:/timm: names are looked up in those libraries' own registries, never imported
    elif ":" in name:
        if name not in vouched(arch):
            raise CheckpointError(
                f"checkpoint {path} names the factory {name!r}; a name inside a file is looked up in the "
                "model registry only (`edgekd models`), never imported. If you trust that factory, name it "
                "yourself: the config's teacher.arch/student.arch, or edgekd.load_model(path, arch=...)"
            )
    elif name not in MODELS:
        raise CheckpointError(f"checkpoint {path}: {MODELS.unknown_message(name)}")
    for key in ("kwargs", "data"):
        bad = non_plain(ckpt.get(key, {}), key)
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} holds a model description that is not plain data ({bad})")
    return name


def build_model(ckpt: dict[str, Any], path: str | Path = "<checkpoint>", arch: str | Iterable[str] | None = None):
    """The model a checkpoint describes, with its weights loaded, in eval mode. ``arch``: the
    ``module:factory`` name(s) the caller vouches for (see :func:`checkpoint_arch`)."""
    from edgekd.models import create_model

    name = checkpoint_arch(ckpt, path, arch)
    data = ckpt["data"]
    shape = (data["num_classes"], data["in_channels"], tuple(data["image_size"]))
    # the weights come from the checkpoint: a torchvision/timm model's `pretrained` file is not read again
    kwargs = legacy_kwargs(name, {k: v for k, v in ckpt.get("kwargs", {}).items() if k != "pretrained"})
    check_fits(name, shape, kwargs, ckpt["state_dict"], path)
    try:
        model = create_model(name, *shape, **kwargs)
    except (RuntimeError, MemoryError) as exc:  # a factory that could not be checked on meta, then failed for real
        raise CheckpointError(f"checkpoint {path}: its model {name} cannot be built: {first_line(exc, 200)}") from None
    load_weights(model, ckpt["state_dict"], path)
    return model.eval()


def check_fits(name: str, shape: tuple, kwargs: dict[str, Any], state_dict: dict, path: str | Path) -> None:
    """The model a checkpoint describes, built on the meta device (shapes, no storage), takes its
    weights: one line otherwise, before the real model is built. The file's model arguments are
    data like the rest: a ``width`` edited to 1e6 had the real build ask for 9e15 bytes (a
    RuntimeError traceback), and 999 built a model of gigabytes for a minute before a size mismatch.
    A foreign factory that cannot build on meta (set-up that reads its tensors) is built for real."""
    import torch

    from edgekd.models import MODELS, create_model

    try:
        with torch.device("meta"):
            ghost = create_model(name, *shape, **kwargs)
    except EdgekdError as exc:  # the factory rejected the file's arguments
        raise CheckpointError(f"checkpoint {path}: {first_line(exc, 200)}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the factory raises: one line for a registry model
        if name in MODELS:  # every registry model builds on meta (`edgekd models` does): its arguments are wrong
            raise CheckpointError(
                f"checkpoint {path}: its model {name} cannot be built with kwargs {repr(kwargs):.120} "
                f"({type(exc).__name__}: {first_line(exc, 120)})"
            ) from None
        return
    # assign: the ghost takes the file's tensors as they are (a copy into a meta tensor is a no-op
    # that torch warns about); shapes and names are compared all the same
    load_weights(ghost, state_dict, path, assign=True)


def legacy_kwargs(arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` completed for a checkpoint written before its model had an option: a registry
    model that takes ``padding`` but whose checkpoint records none was trained with PyTorch's
    symmetric padding (``padding: torch``), the only mode there was (:mod:`edgekd.models.layers`)."""
    import inspect

    from edgekd.models import MODELS

    if "padding" in kwargs or ":" in arch or arch not in MODELS:
        return dict(kwargs)
    takes_padding = "padding" in inspect.signature(MODELS.get(arch)).parameters
    return {**kwargs, "padding": "torch"} if takes_padding else dict(kwargs)


def load_weights(model, state_dict: dict, path: str | Path, assign: bool = False) -> None:
    try:
        model.load_state_dict(state_dict, assign=assign)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"checkpoint {path} does not match the model: {detail[:200]}") from None


def load_model(path: str | Path, arch: str | Iterable[str] | None = None):
    """(model, checkpoint dict) from an edgekd checkpoint file.

    The file's architecture is rebuilt from the model registry; a checkpoint of a foreign
    ``module:factory`` model loads only when ``arch`` names that factory (you vouch for it)."""
    ckpt = load_checkpoint(path)
    if ckpt["format"] == "state_dict":
        raise CheckpointError(f"{path} is a bare state_dict: it does not say which architecture it belongs to")
    return build_model(ckpt, path, arch), ckpt


def check_compatible(ckpt: dict[str, Any], data_info: dict[str, Any], path: str | Path) -> None:
    """A checkpoint must take the data's input and predict its classes (or its masks)."""
    d = ckpt["data"]
    # checkpoints from before segmentation carry no task: they are classifiers
    have_task, want_task = d.get("task", "classification"), data_info.get("task", "classification")
    if have_task != want_task:
        raise CheckpointError(f"checkpoint {path} is a {have_task} model; the data is for {want_task}")
    want = (data_info["num_classes"], data_info["in_channels"], list(data_info["image_size"]))
    have = (d["num_classes"], d["in_channels"], list(d["image_size"]))
    if want != have:

        def fmt(v):
            return f"{v[1]}-channel {v[2][0]}x{v[2][1]} input, {v[0]} classes"

        raise CheckpointError(f"checkpoint {path} was trained for {fmt(have)}; the data has {fmt(want)}")
