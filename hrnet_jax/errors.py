"""The errors that mean a user's mistake (a config, a file, a checkpoint), not a bug.

Entry points print such an error as one `error: ...` line and exit non-zero; anything else keeps
its traceback. Each also derives from the built-in type that callers would catch without us.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave: the message names the key, file or value and the fix."""


class ConfigError(UserError, ValueError):
    """A config value (or combination) that cannot work; the message names the keys."""


class EvaluationError(UserError, RuntimeError):
    """An evaluation during training failed; the message says which step's checkpoint is kept."""


# What entry points report as one `error:` line: our errors, and the OS's about files the user named.
USER_ERRORS = (
    UserError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
