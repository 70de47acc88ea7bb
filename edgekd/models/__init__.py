"""Model creation by registry name or ``package.module:factory``, and size/compute profiles."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from edgekd.errors import EdgekdError, first_line
from edgekd.models.registry import MODELS

__all__ = ["MODELS", "create_model", "count_params", "count_macs", "list_models", "model_task"]


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered model names matching ``pattern`` (and ``task``: classification or segmentation)."""
    return [n for n in MODELS.names(pattern) if task is None or model_task(n) == task]


def model_task(name: str) -> str:
    """What a registered model predicts: ``classification`` (class logits) unless its factory says
    ``segmentation`` (a logit per pixel)."""
    return getattr(MODELS.get(name), "task", "classification")


def _import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EdgekdError(f"model factory {spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a user-named module: any failure to import it is theirs to fix
        raise EdgekdError(f"model factory {spec!r}: cannot import {module_name!r} ({first_line(exc, 160)})") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise EdgekdError(f"model factory {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise EdgekdError(f"model factory {spec!r} is not callable")
    return factory


def create_model(arch: str, num_classes: int, in_channels: int, image_size: tuple[int, int], **kwargs: Any):
    """A fresh model. ``arch`` is a registry name or ``module:callable``; a foreign factory gets
    ``num_classes`` and, where its signature names them, ``in_channels`` and ``image_size``
    (a bare ``**kwargs`` gets ``num_classes`` only: torchvision's factories reject the others)."""
    if ":" in arch:
        factory = _import_factory(arch)
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin without a signature: it gets the arguments given alone
            params = {}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        extra = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
        call = {k: v for k, v in extra.items() if k in params or (takes_any and k == "num_classes")}
        call.update(kwargs)
        try:
            model = factory(**call)
        except (TypeError, ValueError) as exc:
            raise EdgekdError(f"model factory {arch!r} rejected its arguments {sorted(call)}: {first_line(exc, 160)}") from None
        import torch

        if not isinstance(model, torch.nn.Module):
            raise EdgekdError(
                f"model factory {arch!r} returned a {type(model).__name__}, not a torch.nn.Module: "
                "name a function that builds a model (e.g. torchvision.models:resnet18)"
            )
        return model
    factory = MODELS.get(arch)
    try:
        return factory(num_classes=num_classes, in_channels=in_channels, image_size=tuple(image_size), **kwargs)
    except TypeError as exc:
        raise EdgekdError(f"model {arch!r} rejected its arguments {sorted(kwargs)}: {exc}") from None


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included), counted by
    torch's own FLOP counter (conv, linear, matmul) and halved: one MAC is two FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2
