"""Errors of the export stage."""

from __future__ import annotations

from edgekd.errors import EdgekdError


class ExportError(EdgekdError):
    """A model that cannot be converted, or calibration data that does not fit it."""


class ParityError(EdgekdError):
    """An exported format whose outputs are out of bounds against PyTorch."""

    exit_code = 1  # the export ran and a check failed (the bundle is written): not a usage error
