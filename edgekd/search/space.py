"""The search space: student families of the model registry, each a depth ladder (``archs``) times
width multipliers, times input resolutions (``data.image_size``). Every dimension is a list of
choices, so the space is finite and every candidate can be checked against the budget.

A user space is YAML (read with ``safe_load``; names are registry names only, never imported)::

    resolution: [32, 24]              # data.image_size choices; omitted: the data's own size
    families:
      plain:  {archs: [plain2, plain3, plain4], width: [0.25, 0.5, 1.0]}
      resnet: {archs: [resnet8, resnet14], width: [0.5, 1.0]}
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    archs: tuple[str, ...]  # depth ladder, registry names
    widths: tuple[float | int, ...]  # the factory's `width` argument; () leaves it at its default


@dataclass(frozen=True)
class Candidate:
    family: str
    arch: str
    width: float | int | None
    resolution: int | None  # None: the data's own size

    @property
    def kwargs(self) -> dict[str, Any]:
        return {} if self.width is None else {"width": self.width}

    @property
    def key(self) -> str:
        """A file-name-safe identity, the cache key of the candidate's budget figures."""
        w = "default" if self.width is None else f"{self.width:g}"
        r = "native" if self.resolution is None else str(self.resolution)
        return f"{self.arch}_w{w}_r{r}"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "arch": self.arch, "width": self.width, "resolution": self.resolution}


@dataclass(frozen=True)
class SearchSpace:
    families: tuple[Family, ...]
    resolutions: tuple[int | None, ...] = (None,)

    def candidates(self) -> Iterator[Candidate]:
        for fam in self.families:
            for arch, width, res in itertools.product(fam.archs, fam.widths or (None,), self.resolutions):
                yield Candidate(fam.name, arch, width, res)

    def size(self) -> int:
        return sum(len(f.archs) * max(1, len(f.widths)) for f in self.families) * len(self.resolutions)

    def suggest(self, trial: Any) -> Candidate:
        """One candidate from an Optuna trial (categorical choices; conditional on the family)."""
        names = [f.name for f in self.families]
        fam = self.families[names.index(trial.suggest_categorical("family", names))]
        arch = trial.suggest_categorical(f"{fam.name}.arch", list(fam.archs))
        width = trial.suggest_categorical(f"{fam.name}.width", list(fam.widths)) if fam.widths else None
        res = self.resolutions[0]
        if len(self.resolutions) > 1:
            res = trial.suggest_categorical("resolution", list(self.resolutions))
        return Candidate(fam.name, arch, width, res)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "families": {f.name: {"archs": list(f.archs), "width": list(f.widths)} for f in self.families}
        }
        if self.resolutions != (None,):
            out["resolution"] = list(self.resolutions)
        return out


# The registry's student families, the default space: depth ladders of the plain CNNs and the CIFAR
# ResNets, and MobileNetV2-small by width (its depth is fixed). Teachers (plain7+, resnet32+) are
# left out; a YAML space can name them.
DEFAULT_SPACE = {
    "families": {
        "plain": {"archs": ["plain2", "plain3", "plain4", "plain5", "plain6"], "width": [0.25, 0.5, 1.0]},
        "resnet": {"archs": ["resnet8", "resnet14", "resnet20"], "width": [0.25, 0.5, 1.0]},
        "mobilenet": {"archs": ["mobilenetv2_small"], "width": [0.25, 0.5, 1.0]},
    }
}


def _choices(value: Any, key: str, kind: str) -> tuple[Any, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"space: {key} must be a non-empty list, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"space: {key} lists a value twice: {list(value)}")
    for v in value:
        if kind == "int" and (not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096):
            raise ConfigError(f"space: {key} values must be integers in [1, 4096], got {v!r}")
        if kind == "width" and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 64
        ):
            raise ConfigError(f"space: {key} values must be numbers in (0, 64], got {v!r}")
        if kind == "str" and not isinstance(v, str):
            raise ConfigError(f"space: {key} values must be names, got {v!r}")
    return tuple(value)


def _check_keys(mapping: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"space: unknown key '{where}{key}'{hint} (valid: {', '.join(known)})")


def space_from_dict(data: Mapping[str, Any]) -> SearchSpace:
    """Validate a space mapping (the YAML's content) into a :class:`SearchSpace`."""
    from edgekd.models import MODELS, model_task

    if not isinstance(data, Mapping):
        raise ConfigError("space: expected a mapping with 'families' (and optionally 'resolution')")
    _check_keys(data, ["families", "resolution"], "")
    fams = data.get("families")
    if not isinstance(fams, Mapping) or not fams:
        raise ConfigError("space: 'families' must map a family name to {archs: [...], width: [...]}")
    families = []
    for name, spec in fams.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"space: families.{name} must be a mapping with archs (and width)")
        _check_keys(spec, ["archs", "width"], f"families.{name}.")
        if "archs" not in spec:
            raise ConfigError(f"space: families.{name} needs archs: [registry names]")
        archs = _choices(spec["archs"], f"families.{name}.archs", "str")
        for arch in archs:
            if ":" in arch:
                raise ConfigError(
                    f"space: families.{name}.archs: {arch!r}: a search space names registry models only (`edgekd "
                    "models`)"
                )
            if arch not in MODELS:
                raise ConfigError(f"space: families.{name}.archs: {MODELS.unknown_message(arch)}")
            if model_task(arch) != "classification":
                raise ConfigError(
                    f"space: families.{name}.archs: {arch} is a {model_task(arch)} model; search ranks classifiers by "
                    "val accuracy"
                )
        widths = _choices(spec["width"], f"families.{name}.width", "width") if "width" in spec else ()
        families.append(Family(str(name), archs, widths))
    res: tuple[int | None, ...] = (None,)
    if data.get("resolution") is not None:
        res = _choices(data["resolution"], "resolution", "int")
    return SearchSpace(tuple(families), res)


def load_space(space: str | Path | Mapping[str, Any] | SearchSpace | None) -> SearchSpace:
    """A space from a YAML file, a mapping, or None (the registry's student families)."""
    if isinstance(space, SearchSpace):
        return space
    if space is None:
        return space_from_dict(DEFAULT_SPACE)
    if isinstance(space, Mapping):
        return space_from_dict(space)
    if not isinstance(space, (str, Path)):
        raise ConfigError(f"space must be a YAML file's path or a mapping, got {type(space).__name__}")
    from edgekd.config import load_yaml

    return space_from_dict(load_yaml(space))
