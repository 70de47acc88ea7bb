"""Model checkpoints: one model alone (no teacher, no KD wrapper), self-describing, written atomically.

A checkpoint records everything needed to rebuild and feed the model without the run that made it:
architecture and its arguments, input channels/size, classes, normalization statistics. Training
state (optimizer, epoch, history) travels only in ``*_last.pt`` under ``train_state``, which
:func:`load_model` ignores. Files are read with ``weights_only=True``: loading never runs code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.atomic import write_bytes
from edgekd.errors import CheckpointError, first_line

FORMAT = "edgekd.model/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically. In a distributed run only rank 0 writes (the others hold the
    same weights), so this is a no-op on every other rank."""
    import torch

    from edgekd.train.distributed import world

    if not world().main:
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

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError, AttributeError) as exc:
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {first_line(exc, 160)}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not an edgekd checkpoint (it holds a {type(ckpt).__name__})")
    if ckpt.get("format") != FORMAT:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return {"format": "state_dict", "state_dict": ckpt}
        raise CheckpointError(f"{path} is not an edgekd checkpoint (format {ckpt.get('format')!r}, expected {FORMAT!r})")
    for key in ("arch", "data", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}: it is damaged or from an incompatible edgekd")
    return ckpt


def build_model(ckpt: dict[str, Any], path: str | Path = "<checkpoint>"):
    """The model a checkpoint describes, with its weights loaded, in eval mode."""
    from edgekd.models import create_model

    data = ckpt["data"]
    kwargs = legacy_kwargs(ckpt["arch"], ckpt.get("kwargs", {}))
    model = create_model(ckpt["arch"], data["num_classes"], data["in_channels"], tuple(data["image_size"]), **kwargs)
    load_weights(model, ckpt["state_dict"], path)
    return model.eval()


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


def load_weights(model, state_dict: dict, path: str | Path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"checkpoint {path} does not match the model: {detail[:200]}") from None


def load_model(path: str | Path):
    """(model, checkpoint dict) from an edgekd checkpoint file."""
    ckpt = load_checkpoint(path)
    if ckpt["format"] == "state_dict":
        raise CheckpointError(f"{path} is a bare state_dict: it does not say which architecture it belongs to")
    return build_model(ckpt, path), ckpt


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
