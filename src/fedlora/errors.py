"""Exceptions a user sees. Each message names the field (or file) at fault and how to fix it."""

from __future__ import annotations


class FedLoraError(Exception):
    """Base class for errors caused by input rather than by a bug."""


class ConfigError(FedLoraError, ValueError):
    """A configuration value is unknown, out of range, or inconsistent with the model or data."""


class DataError(FedLoraError, ValueError):
    """A data directory or file is missing, or does not have the expected columns."""


class UpdateRejected(FedLoraError, ValueError):
    """A client update failed validation (NaN/Inf, wrong shape, rank above assignment, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
