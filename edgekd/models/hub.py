"""Architectures of torchvision and timm by name: ``torchvision:mobilenet_v3_small``, ``timm:resnet18``.

The model is built for the data: its classification head resized to the data's classes and its
first convolution to the data's channels. Pretrained weights come from a local file only
(``kwargs: {pretrained: PATH}``, a state_dict as torchvision or timm publish it, read with
``weights_only``): edgekd never downloads. With weights, the model is built at their own head
size, loaded, and then the head is replaced; a grayscale input sums the first convolution's RGB
filters, so the pretrained features still respond to intensity.

timm is an optional extra (``pip install 'edgekd[timm]'``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError

PREFIXES = ("torchvision:", "timm:")


def is_hub_name(arch: str) -> bool:
    return arch.startswith(PREFIXES)


def _unknown(kind: str, name: str, names: list[str]) -> EdgekdError:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return EdgekdError(f"unknown {kind} model {name!r}{hint} ({len(names)} available)")


def _read_weights(path: str) -> dict[str, Any]:
    from edgekd.tensorfile import load_tensors

    file = Path(path).expanduser()
    if not file.is_file():
        raise EdgekdError(
            f"pretrained weights not found: {file} (edgekd loads weights from a local file only; it never downloads)"
        )
    try:
        state = load_tensors(file)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a file it cannot read
        from edgekd.errors import first_line

        raise EdgekdError(f"cannot read pretrained weights {file}: {first_line(exc, 160)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise EdgekdError(f"pretrained weights {file} hold no state_dict")
    return state


def _replace(model: Any, path: str, module: Any) -> None:
    parent = model
    *parents, last = path.split(".")
    for part in parents:
        parent = getattr(parent, part)
    setattr(parent, last, module)


def _adapt_first_conv(model: Any, in_channels: int) -> None:
    """The first Conv2d takes ``in_channels``; pretrained RGB filters are summed for one channel
    (and repeated, scaled, for other counts)."""
    import torch
    from torch import nn

    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None or found[1].in_channels == in_channels:
        return
    name, conv = found
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )
    with torch.no_grad():
        w = conv.weight
        if in_channels == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_channels // w.shape[1])
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)


def _resize_head(model: Any, num_classes: int) -> None:
    """The last Linear layer (torchvision's fc / classifier[-1] / heads.head) gets ``num_classes`` outputs."""
    from torch import nn

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise EdgekdError("cannot resize this model's head: it has no Linear layer")
    name, head = found[-1]
    if head.out_features != num_classes:
        _replace(model, name, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))


def torchvision_model(name: str, num_classes: int, in_channels: int, pretrained: str | None = None, **kwargs: Any):
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise _unknown("torchvision", name, names)
    if pretrained is None:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    else:
        model = torchvision.models.get_model(name, weights=None, **kwargs)  # the weights' own head size
        state = _read_weights(pretrained)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise EdgekdError(
                f"pretrained weights {pretrained} do not fit torchvision {name}: "
                f"{(lines[1] if len(lines) > 1 else lines[0])[:200]}"
            ) from None
        _resize_head(model, num_classes)
    _adapt_first_conv(model, in_channels)
    return model


def timm_model(name: str, num_classes: int, in_channels: int, pretrained: str | None = None, **kwargs: Any):
    try:
        import timm
    except ImportError:
        raise EdgekdError("timm: architectures need timm (pip install 'edgekd[timm]')") from None
    names = timm.list_models()
    if name not in names:
        raise _unknown("timm", name, names)
    # timm's own ways to fetch or read weights: edgekd takes weights through `pretrained` (a local
    # file) alone, so a config or a checkpoint's kwargs can never make it download or read elsewhere
    fetching = sorted(set(kwargs) & {"pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"})
    if fetching:
        raise EdgekdError(
            f"timm model {name!r}: kwargs {fetching[0]!r} is not accepted; give local weights as kwargs {{pretrained: "
            "PATH}"
        )
    options: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels, **kwargs}
    if pretrained is not None:
        file = Path(pretrained).expanduser()
        if not file.is_file():
            raise EdgekdError(
                f"pretrained weights not found: {file} (edgekd loads weights from a local file only; it never "
                "downloads)"
            )
        # timm loads the file itself and adapts the head and the input channels; the overlay
        # replaces every download source with this file
        options.update(pretrained=True, pretrained_cfg_overlay={"file": str(file), "hf_hub_id": None, "url": None})
    try:
        return timm.create_model(name, **options)
    except (RuntimeError, TypeError, ValueError) as exc:
        from edgekd.errors import first_line

        raise EdgekdError(f"timm model {name!r}: {first_line(exc, 200)}") from None


def hub_model(arch: str, num_classes: int, in_channels: int, **kwargs: Any):
    source, _, name = arch.partition(":")
    build = torchvision_model if source == "torchvision" else timm_model
    return build(name, num_classes, in_channels, **kwargs)
