"""Exception types. Every error a user can cause with bad input is an ``LkrError`` whose
message is one line naming the file or row; the CLI prints it without a traceback."""

from __future__ import annotations


class LkrError(Exception):
    """Base class of the kit's user-facing errors (one-line message)."""


class DataError(LkrError):
    """A dataset could not be read."""


class NotADatasetError(DataError):
    """A path that is no dataset the kit knows."""


class BadImageError(DataError):
    """A corrupt, truncated or wrongly sized image (message names the file)."""


class BadRowError(DataError):
    """A malformed CSV row (message names the file and row number)."""


class MissingClassError(DataError):
    """A class folder that is missing or empty."""


class MissingSplitError(DataError):
    """FER2013 data without its official splits (e.g. a CSV with no ``Usage`` column)."""


class ConfigError(LkrError, ValueError):
    """A configuration value out of its range (message names the field)."""


class RunError(LkrError):
    """A run folder that is missing, incomplete or not a trained run."""


class TrainingError(LkrError):
    """Training had to stop (e.g. a non-finite loss)."""
