"""Errors of the bench stage."""

from __future__ import annotations

from edgekd.errors import EdgekdError


class BenchError(EdgekdError):
    """Bench settings or inputs that cannot give a report (a bad flag, no bundle, unreadable eval data).

    A single model that fails to load or run is *not* a BenchError: its row is marked failed and
    the other rows still run."""
