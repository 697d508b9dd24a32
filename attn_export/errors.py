"""One exception family for everything a user can get wrong or lack.

The CLI catches :class:`AttnExportError`, prints its message on one line and exits with
its ``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import traceback
from pathlib import Path

EXIT_OK = 0
EXIT_VERIFICATION_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class AttnExportError(Exception):
    """Base class of user-facing errors."""

    exit_code = EXIT_USAGE


class UsageError(AttnExportError):
    """Bad arguments or input files: unknown names, bad shapes, bad weights, ..."""

    exit_code = EXIT_USAGE


class VerificationError(AttnExportError):
    """The artifact was produced but does not verify (mismatch, NaN, unparseable graph)."""

    exit_code = EXIT_VERIFICATION_FAILED


class EnvironmentMissingError(AttnExportError):
    """A runtime the command needs is not installed or has no device (TensorRT, CUDA)."""

    exit_code = EXIT_ENVIRONMENT


def first_text_line(text: str) -> str:
    """The first line of ``text`` (stripped), or "" for empty text."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for one-line user-facing errors."""
    line = first_text_line(str(error))
    if line:
        return line[:limit]
    # a bare `assert` in a model's code says nothing: show the failing line instead
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if frames and frames[-1].line:
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
        return f"{type(error).__name__} at {where}: {frames[-1].line.strip()}"[:limit]
    return type(error).__name__
