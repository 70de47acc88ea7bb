"""Range checks for every number a user gives (CLI flags and the same library arguments), and the
one check of names printed as they are (no control characters).

One function, :func:`check_number`, used by every verb (bench, deploy, sweep, models …): a value of
the wrong type, NaN/inf, or outside its range is one :class:`~edgekd.errors.EdgekdError` line
naming the flag, the allowed range and what was given. Standard library only.
"""

from __future__ import annotations

import math
import re
from typing import Any

from edgekd.errors import EdgekdError

# Thread counts: above this the runtime spends its time creating and scheduling threads, not
# running the model; `--threads 999` on a 2-core machine ran a bench for minutes. No board edgekd
# targets (a Raspberry Pi has 4 cores, an x86 server rarely more than 256 hardware threads) gains
# from more, and the local bench checks the tighter "cores this process may use" on top of it.
MAX_THREADS = 256
# Timed or warm-up runs per model: 10⁶ runs of even a 1 ms model are 17 minutes per row.
MAX_RUNS = 1_000_000
# A TCP port.
MAX_PORT = 65535
# Seconds a single step may take (deploy's ssh/scp/rsync steps, the remote bench): one day.
MAX_TIMEOUT_S = 86400.0
# An image side in pixels that a bundle's preprocessing may ask for, and `edgekd models --input`
# may count at: a 100000×100000 resize is 30 GB of RGB before the model sees it.
MAX_IMAGE_SIDE = 4096
# MCU budgets in KB: the largest parts have a few MB of flash/RAM; 1 GB is already no MCU.
MAX_KB = 1024.0 * 1024.0
# Pixels of one image file (training data or predict): 8192×8192, 67 Mpixel. A 50-Mpixel camera's
# photo passes; decoded to RGB it is 192 MiB, times up to 8 decoding workers. A few-hundred-KB PNG
# can declare 20000×10000 (600 MB decoded): refused from its header, before any decoding.
MAX_IMAGE_PIXELS = 8192 * 8192


def is_number(value: Any) -> bool:
    """An int or float, not a bool (JSON's true is no count, YAML's yes no rate)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A number (:func:`is_number`) that is neither NaN nor infinite: what a file read as data may hold."""
    return is_number(value) and math.isfinite(value)


class NumberError(EdgekdError):
    """A number outside its allowed range (or not a finite number)."""


def _n(value: float) -> str:
    """A bound or value as a person writes it: 1000000, 0.5 (not 1e+06); 1e+30 past 10^15, where
    an integer's digits would be float noise."""
    if isinstance(value, float) and abs(value) >= 1e15:
        return repr(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _range_text(kind: str, low: float | None, high: float | None, low_open: bool) -> str:
    """ "an integer from 1 to 256", "a number above 0 and up to 1048576" …"""
    if low is not None and high is not None:
        return f"{kind} above {_n(low)} and up to {_n(high)}" if low_open else f"{kind} from {_n(low)} to {_n(high)}"
    if low is not None:
        return f"{kind} above {_n(low)}" if low_open else f"{kind} of at least {_n(low)}"
    return f"{kind} up to {_n(high)}" if high is not None else kind


def check_number(
    flag: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    optional: bool = False,
    why: str = "",
    error: type[EdgekdError] = NumberError,
) -> Any:
    """``value`` if it is a finite number (an int when ``integer``) with ``low`` ≤ value ≤ ``high``
    (``low`` < value with ``low_open``); ``None`` passes when ``optional``. Otherwise one line:
    ``--threads must be an integer from 1 to 256, got 999``. ``why`` is appended to it; ``error``
    is the caller's error class (a BenchError for the bench …), all of them EdgekdErrors."""
    if value is None and optional:
        return None
    wanted = _range_text("an integer" if integer else "a number", low, high, low_open)
    tail = f" ({why})" if why else ""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise error(f"{flag} must be {wanted}, got {value!r}{tail}")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{flag} must be a finite number ({wanted}), got {value}{tail}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        raise error(f"{flag} must be {wanted}, got {_n(value)}{tail}")
    return value


def out_of_range(
    args: Any,
    *,
    at_least: dict[str, float] | None = None,
    positive: tuple[str, ...] = (),
    fractions: tuple[str, ...] = (),
) -> list[str]:
    """:func:`check_number`'s line for each attribute of ``args`` (an argparse Namespace) outside its
    range, in the order given; empty when all are fine. For scripts that check all their flags at
    once before any work (the benchmarks). ``at_least``: attribute → minimum; ``positive``: above 0;
    ``fractions``: in [0, 1]. An attribute that is None (an unset optional flag) is not checked.

    >>> import argparse
    >>> out_of_range(argparse.Namespace(runs=0, alpha=None), at_least={"runs": 1}, fractions=("alpha",))
    ['--runs must be an integer of at least 1, got 0']
    """
    checks = [(name, {"low": low}) for name, low in (at_least or {}).items()]
    checks += [(name, {"low": 0, "low_open": True}) for name in positive]
    checks += [(name, {"low": 0, "high": 1}) for name in fractions]
    problems = []
    for name, bounds in checks:
        value = getattr(args, name)
        try:
            check_number("--" + name.replace("_", "-"), value, integer=type(value) is int, optional=True, **bounds)
        except NumberError as exc:
            problems.append(str(exc))
    return problems


def check_threads(
    flag: str, value: int | None, cores: int | None = None, error: type[EdgekdError] = NumberError
) -> int | None:
    """A thread count: 1 … :data:`MAX_THREADS`, and at most ``cores`` when the run is local."""
    check_number(flag, value, integer=True, low=1, high=MAX_THREADS, optional=True, error=error)
    if value is not None and cores is not None and value > cores:
        raise error(
            f"{flag} {value}: this process may use {cores} core(s); more threads than cores measure "
            f"time-slicing, not the model (use at most {cores})"
        )
    return value


def check_runs(runs: int, warmup: int, error: type[EdgekdError] = NumberError) -> None:
    """Timed runs (≥ 1) and warm-up runs (≥ 0) of a bench, each at most :data:`MAX_RUNS`."""
    check_number("--runs", runs, integer=True, low=1, high=MAX_RUNS, error=error)
    check_number("--warmup", warmup, integer=True, low=0, high=MAX_RUNS, error=error)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # newlines, tabs, ESC, C1 controls


def control_character_in(texts) -> str | None:
    """The first of ``texts`` holding a control character (a newline, an escape sequence), or None:
    such a name, printed as it is in a table or log, rewrites the user's terminal."""
    return next((t for t in texts if _CONTROL.search(t)), None)
