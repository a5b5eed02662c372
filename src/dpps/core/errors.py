"""The one exception hierarchy of dpps.

Every error a user can cause or meet maps to exactly one class here. The CLI maps classes to
exit codes and the REST API to HTTP statuses, each in one place (``exit_code`` and
``http_status`` below), so no layer invents its own error vocabulary.
"""

from __future__ import annotations


class DppsError(Exception):
    """Base of all expected dpps errors: the message is meant for the user, one line."""

    exit_code: int = 1
    http_status: int = 500
    title: str = "Internal error"


class InvalidInput(DppsError):
    """The request is malformed: bad DID, bad metadata key, bad filter syntax, bad path."""

    exit_code = 3
    http_status = 400
    title = "Invalid input"


class ConfigError(InvalidInput):
    """The configuration file or an environment override is wrong."""

    exit_code = 4
    title = "Configuration error"


class NotFound(DppsError):
    """A DID, RSE, replica, file on disk or workspace does not exist."""

    exit_code = 5
    http_status = 404
    title = "Not found"


class Conflict(DppsError):
    """The request contradicts what the archive holds (e.g. same LFN, other content)."""

    exit_code = 6
    http_status = 409
    title = "Conflict"


class IntegrityFailure(DppsError):
    """Bytes are not what they claim to be: checksum mismatch, corrupt or truncated file."""

    exit_code = 7
    http_status = 422
    title = "Integrity failure"


class PermissionDenied(DppsError):
    """The account may not do this, or a path tries to leave its root."""

    exit_code = 8
    http_status = 403
    title = "Permission denied"


class Unavailable(DppsError):
    """A resource exists but cannot be reached now (no AVAILABLE replica, storage down)."""

    exit_code = 9
    http_status = 503
    title = "Unavailable"


#: Documented exit codes, also printed by ``dpps --help``.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (a bug: please report it)",
    2: "command-line usage error",
    InvalidInput.exit_code: "invalid input",
    ConfigError.exit_code: "configuration error",
    NotFound.exit_code: "not found",
    Conflict.exit_code: "conflict with the archive's content",
    IntegrityFailure.exit_code: "integrity failure (checksum, corrupt file)",
    PermissionDenied.exit_code: "permission denied",
    Unavailable.exit_code: "unavailable",
    10: "partial failure: some items of a bulk command failed (see the report)",
}


#: The classes a message may name, by class name: the one registry behind the REST problem
#: types (``dpps.oms.api.problems``), the remote client's decoding of them and of failed bulk
#: items (``dpps.client``), and errors stored as text by daemons (``error_from_text``).
ERROR_CLASSES: dict[str, type[DppsError]] = {
    cls.__name__: cls
    for cls in (
        InvalidInput,
        ConfigError,
        NotFound,
        Conflict,
        IntegrityFailure,
        PermissionDenied,
        Unavailable,
    )
}


def public_name(exc: DppsError) -> str:
    """The registered class ``exc`` is shown as (a subclass such as a query syntax error is
    shown as its ``InvalidInput`` base, so the other side can rebuild it)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_CLASSES:
            return cls.__name__
    return Unavailable.__name__


def error_for(name: str | None, exit_code: int, message: str) -> DppsError:
    """The exception a problem or a failed bulk item stands for: by class name, else by the
    exit code, else ``Unavailable``."""
    cls = ERROR_CLASSES.get(name or "")
    if cls is None:
        by_code = {c.exit_code: c for c in ERROR_CLASSES.values()}
        cls = by_code.get(exit_code, Unavailable)
    return cls(message)


def error_text(exc: BaseException) -> str:
    """An error as one stored line that ``error_from_text`` turns back into the same class
    (work that failed in a daemon reports the error its caller would have seen)."""
    return f"{type(exc).__name__}: {exc}"


def error_from_text(text: str) -> DppsError:
    """The inverse of ``error_text``; an unknown class is a plain ``DppsError``."""
    name, sep, message = text.partition(": ")
    cls = ERROR_CLASSES.get(name) if sep else None
    return cls(message) if cls is not None else DppsError(text)
