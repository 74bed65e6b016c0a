"""Errors that name the file, line and field at fault."""

from __future__ import annotations

from pathlib import Path


class ClinsynthError(Exception):
    """Base class for errors a user can act on."""


class DataError(ClinsynthError, ValueError):
    """Bad input data: the message names the file, and the line and field when known."""

    def __init__(
        self, message: str, path: Path | str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            message = f"field '{field}': {message}"
        super().__init__(where + message)


class PrivacyError(ClinsynthError, PermissionError):
    """Private data was about to be sent to an endpoint that is not approved for it."""


class OutputError(ClinsynthError, OSError):
    """An output could not be written (disk full, read-only folder, a file where a folder should be).

    The message names the path and says the previous content is unchanged; still an
    OSError for callers that catch those.
    """


class LMSetupError(ClinsynthError, RuntimeError):
    """A language model could not be set up (missing extra, bad model file, server failure)."""


class BudgetExceeded(ClinsynthError):
    """The next LM request could pass the run's ``--max-cost``: the run stops before sending it."""
