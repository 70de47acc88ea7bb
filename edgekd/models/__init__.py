"""Model creation by registry name or ``package.module:factory``, and size/compute profiles."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
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


# Folders searched first for the module of a user's ``module:factory`` (the current folder and the
# config file's, set by `edgekd distill` for the names its config gives): a factory written beside
# the config works without PYTHONPATH. Empty outside such a block, so nothing else gains a path.
_FACTORY_DIRS: list[str] = []


@contextlib.contextmanager
def factory_search_path(dirs: Sequence[str | Path]) -> Iterator[None]:
    """Within the block, ``module:factory`` names are also imported from ``dirs``."""
    saved = list(_FACTORY_DIRS)
    _FACTORY_DIRS[:0] = [str(Path(d).resolve()) for d in dirs if d is not None]
    try:
        yield
    finally:
        _FACTORY_DIRS[:] = saved


def _import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EdgekdError(f"model factory {spec!r}: expected package.module:function")
    added = [d for d in dict.fromkeys(_FACTORY_DIRS) if d not in sys.path]
    sys.path[:0] = added
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a user-named module: any failure to import it is theirs to fix
        where = f" (searched the Python path and {', '.join(_FACTORY_DIRS)})" if _FACTORY_DIRS else ""
        raise EdgekdError(
            f"model factory {spec!r}: cannot import {module_name!r} ({first_line(exc, 160)}){where}"
        ) from None
    finally:
        for d in added:
            sys.path.remove(d)
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise EdgekdError(f"model factory {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise EdgekdError(f"model factory {spec!r} is not callable")
    return factory


def create_model(arch: str, num_classes: int, in_channels: int, image_size: tuple[int, int], /, **kwargs: Any):
    """A fresh model. ``arch`` is a registry name or ``module:callable``; a foreign factory gets
    ``num_classes`` and, where its signature names them, ``in_channels`` and ``image_size``
    (a bare ``**kwargs`` gets ``num_classes`` only: torchvision's factories reject the others).

    The class count, channels and input size come from the data, in this one place: the same
    value in ``kwargs`` is dropped, a different one is an error naming it."""
    data_args = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    for key, value in list(kwargs.items()):
        if key in data_args:
            given = tuple(value) if isinstance(value, (list, tuple)) else value
            if given != data_args[key]:
                raise EdgekdError(
                    f"model {arch!r}: kwargs sets {key}={value!r}, but {key} comes from the data ({data_args[key]!r}); "
                    "remove it from the kwargs"
                )
            del kwargs[key]
    from edgekd.models.hub import hub_model, is_hub_name

    if is_hub_name(arch):  # torchvision:NAME, timm:NAME: head and first conv fit to the data
        return hub_model(arch, num_classes, in_channels, **kwargs)
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
            raise EdgekdError(
                f"model factory {arch!r} rejected its arguments {sorted(call)}: {first_line(exc, 160)}"
            ) from None
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
    except (TypeError, ValueError) as exc:  # an unknown keyword, or a value the model rejects
        raise EdgekdError(f"model {arch!r} rejected its arguments {sorted(kwargs)}: {exc}") from None


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included), counted by
    torch's own FLOP counter (conv, linear, matmul) and halved: one MAC is two FLOPs.

    The pass runs on a copy of the model on the ``meta`` device, which has shapes but no storage:
    counting a 4096×4096 input allocates nothing of its size, and the model itself is untouched. A
    model with an op that the meta device cannot run is counted on real zeros instead."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def flops(net, device) -> int:
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                net(torch.zeros(input_shape, device=device))
        finally:
            net.train(was_training)
        return int(counter.get_total_flops())

    try:
        return flops(copy.deepcopy(model).to("meta"), "meta") // 2
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        pass  # data-dependent control flow (.item(), nonzero) or an op without a meta kernel
    param = next(model.parameters(), None)
    return flops(model, param.device if param is not None else "cpu") // 2
