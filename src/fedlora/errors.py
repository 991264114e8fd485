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


class CheckpointError(FedLoraError):
    """A checkpoint file is truncated or corrupt (a full disk, a copy cut short, a damaged file)."""

    def __init__(self, path: object, reason: str, fix: str = ""):
        super().__init__(f"checkpoint file {path} is unreadable ({reason})" + (f"; {fix}" if fix else ""))
        self.path = path
        self.reason = reason


class RunDirError(FedLoraError):
    """The run directory cannot be written: read-only, not a directory, or the disk is full."""
