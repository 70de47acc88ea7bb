"""Intermediate features by module path, through forward hooks: users' models need no rewriting.

A path is what ``model.named_modules()`` calls the module (``layer2``, ``features.4``,
``layer3.0.conv2``). A wrong path is the user's to fix, so it is reported with the closest valid
path and the list of valid ones.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import did_you_mean

MAX_LISTED = 60  # a deep ResNet has hundreds of paths: beyond this, list the shallow ones only


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside the wrappers that edgekd put around it (input re-normalization:
    twice for a teacher with statistics of its own teaching a student with others)."""
    while hasattr(model, "edgekd_inner"):
        model = model.edgekd_inner
    return model


def module_paths(model: nn.Module) -> list[str]:
    return [name for name, _ in unwrap(model).named_modules() if name]


def resolve_module(model: nn.Module, path: str, key: str, role: str, arch: str = "") -> nn.Module:
    """``model``'s sub-module at ``path``; a missing path is a :class:`ConfigError` naming ``key``."""
    modules = dict(unwrap(model).named_modules())
    if path and path in modules:
        return modules[path]
    valid = module_paths(model)
    hint = did_you_mean(path, valid)
    shown = valid if len(valid) <= MAX_LISTED else [p for p in valid if p.count(".") <= 1]
    more = f" (and {len(valid) - len(shown)} deeper ones)" if len(shown) < len(valid) else ""
    what = f"the {role} ({arch})" if arch else f"the {role}"
    raise ConfigError(f"{key}: {what} has no module {path!r}{hint} valid paths: {', '.join(shown)}{more}")


class FeatureHook:
    """Keeps the latest output of one module (with its autograd history, for the student)."""

    def __init__(self, module: nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._store)

    def _store(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise ConfigError(
                f"module {type(module).__name__} returns {type(output).__name__}, not a tensor: pick another layer"
            )
        self.output = output

    def pop(self) -> torch.Tensor:
        """The stored output, forgotten afterwards (no activation outlives its step)."""
        out, self.output = self.output, None
        if out is None:
            raise RuntimeError("hooked module did not run in this forward pass")
        return out

    def remove(self) -> None:
        self._handle.remove()
        self.output = None
