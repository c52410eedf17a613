"""Errors jpq reports to the user as one clear line (the CLI prints ``error: <message>``, exit 2)."""

from __future__ import annotations


class JpqError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class ConfigError(JpqError):
    """A configuration value is invalid (caught before any training)."""


class DatasetError(JpqError):
    """A dataset is missing, corrupt or in the wrong format."""


class UnsupportedModelError(JpqError):
    """A seed network contains an operation the search cannot handle (names the node)."""


class RunDirError(JpqError):
    """A run directory is missing files or holds a corrupt checkpoint."""
