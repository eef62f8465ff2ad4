"""User-facing errors.

Every mistake a user can make (unknown model, malformed CSV, missing folder, bad config key ...)
raises :class:`BenchError` (or a subclass) with a message that names the file, line or key and says
what to do. The CLI prints the message without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    """An error caused by user input; the CLI prints ``str(err)`` and exits non-zero."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(BenchError):
    """Unknown or ill-typed configuration key, unknown model/variant/dataset name."""


class DataError(BenchError):
    """A dataset file or folder is missing, malformed or unreadable."""


class CheckpointError(BenchError):
    """A checkpoint cannot be used for the requested run."""


class ExportError(BenchError):
    """A trained model cannot be exported (the exporter cannot trace or convert it)."""

    exit_code = 3


class TrainingError(BenchError):
    """Training cannot go on (for example a non-finite loss)."""

    exit_code = 3


def suggest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean: a, b?)"`` for the closest names in ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, value: str, choices: Iterable[str]) -> ConfigError:
    """Build the standard 'unknown X' error listing the valid choices."""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} {value!r}{suggest(value, choices)}; valid: {', '.join(choices)}"
    )
