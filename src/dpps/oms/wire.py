"""Conventions the API server and its client share, kept free of server imports.

The client (and with it the remote CLI) must start fast, so it never imports FastAPI; both
sides take the problem-type names, header names and placeholders from here.
"""

from __future__ import annotations

from dpps.core import errors
from dpps.core.errors import DppsError

PROBLEM_TYPE_PREFIX = "urn:dpps:problem:"
PLACEHOLDER = "<upload>"
SIDECAR_HEADER = "Dpps-Sidecar"
UPLOAD_PATH = "/api/v1/ingest"
CONTENT_PATH = "/api/v1/content/"

#: Error classes a client may receive, by the name used in the problem type.
ERROR_CLASSES: dict[str, type[DppsError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidInput,
        errors.ConfigError,
        errors.NotFound,
        errors.Conflict,
        errors.IntegrityFailure,
        errors.PermissionDenied,
        errors.Unavailable,
    )
}


def error_for(name: str | None, exit_code: int, message: str) -> DppsError:
    """The exception a problem or a failed bulk item stands for: by class name, else by the
    exit code, else Unavailable."""
    cls = ERROR_CLASSES.get(name or "")
    if cls is None:
        by_code = {c.exit_code: c for c in ERROR_CLASSES.values()}
        cls = by_code.get(exit_code, errors.Unavailable)
    return cls(message)
