"""One registry pattern for models, KD methods, exporters and bench targets.

Entries are registered with a decorator in the module that defines them. A registry is told which
modules hold its entries (``providers``) and imports them on first lookup, so that ``import edgekd``
stays lean and no caller needs an ``import x  # registers`` line.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from edgekd.errors import EdgekdError

T = TypeVar("T")


class UnknownNameError(EdgekdError):
    """A name that no registry entry carries."""


def did_you_mean(name: str, choices: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``name``, or "" when none is close;
    ``prefix`` is shown before it (a config section: 'distill.alpha'). The one did-you-mean of
    edgekd: registries, config keys and values, module paths and bench filters use it. Case is
    ignored when comparing ('MCU' → 'mcu'), though names are looked up as written."""
    close = _closest(name, list(choices))
    return f"; did you mean {prefix + close!r}?" if close else ""


def _closest(name: str, choices: list[str]) -> str | None:
    """The choice equal to ``name`` but for case, else the closest by difflib, else the closest
    once both are lower-cased: difflib alone finds nothing for 'CORTEX-M4' among 'cortex-m4', …"""
    folded = {c.casefold(): c for c in reversed(choices)}  # the first of two that fold alike
    if name.casefold() in folded:
        return folded[name.casefold()]
    close = difflib.get_close_matches(name, choices, n=1) or difflib.get_close_matches(name.casefold(), folded, n=1)
    if not close:
        return None
    return close[0] if close[0] in choices else folded[close[0]]


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown KIND 'name'; did you mean 'x'? available: a, b, c``."""
    choices = list(choices)
    return f"unknown {kind} {name!r}{did_you_mean(name, choices) or ';'} available: {', '.join(choices)}"


class DocumentedEntry(NamedTuple):
    name: str
    doc: str  # the docstring's first paragraph on one line
    attributes: dict[str, Any]  # the class attributes asked for that are literals in the source


def documented_entries(variable: str, modules: Sequence[str], attributes: Sequence[str] = ()) -> list[DocumentedEntry]:
    """Every entry registered with ``@<variable>.register(...)`` in ``modules``, in source order,
    read from their files with ``ast``: nothing is imported, so ``edgekd --help`` lists the KD
    methods and their config keys without torch. ``attributes``: class attributes to read (literal
    values only; inherited ones are not seen)."""
    out = []
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for deco in node.decorator_list:
                call = deco.func if isinstance(deco, ast.Call) else None
                if (
                    isinstance(call, ast.Attribute)
                    and call.attr == "register"
                    and isinstance(call.value, ast.Name)
                    and call.value.id == variable
                ):
                    args = deco.args
                    name = args[0].value if args and isinstance(args[0], ast.Constant) else node.name
                    doc = (ast.get_docstring(node) or "").split("\n\n")[0]
                    found = {}
                    for stmt in node.body if isinstance(node, ast.ClassDef) else ():
                        if (
                            isinstance(stmt, ast.Assign)
                            and len(stmt.targets) == 1
                            and isinstance(stmt.targets[0], ast.Name)
                        ):
                            if stmt.targets[0].id in attributes:
                                try:
                                    found[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                                except ValueError:
                                    pass
                    out.append(DocumentedEntry(name, " ".join(doc.split()), found))
    return out


class Registry(Generic[T]):
    """A name → object map with did-you-mean errors and wildcard listing."""

    def __init__(self, kind: str, providers: Sequence[str] = ()) -> None:
        self.kind = kind  # what an entry is, for messages: "model", "KD method", …
        self._providers = tuple(providers)
        self._loaded = not self._providers
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register()`` uses the object's ``__name__``."""

        def deco(obj: T) -> T:
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                warnings.warn(f"{self.kind} {key!r} registered again; the new one replaces the old", stacklevel=2)
            self._entries[key] = obj
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._providers:
                importlib.import_module(module)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self.names())

    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order (``names`` sorts)."""
        self._load()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
