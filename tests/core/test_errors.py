"""The one error-name registry: what the server names, the client and daemons rebuild."""

from __future__ import annotations

import pytest

from dpps.core import errors
from dpps.core.errors import (
    ERROR_CLASSES,
    ConfigError,
    DppsError,
    InvalidInput,
    NotFound,
    Unavailable,
    error_for,
    error_from_text,
    error_text,
    public_name,
)


class _QuerySyntax(InvalidInput):
    """A subclass the other side does not know."""


def test_registry_holds_every_public_class_once() -> None:
    public = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, DppsError) and cls is not DppsError
    }
    assert set(ERROR_CLASSES.values()) == public
    assert all(ERROR_CLASSES[cls.__name__] is cls for cls in public)


@pytest.mark.parametrize("cls", list(ERROR_CLASSES.values()))
def test_name_and_text_round_trip(cls: type[DppsError]) -> None:
    exc = cls("it went wrong")
    again = error_for(public_name(exc), exc.exit_code, str(exc))
    assert type(again) is cls
    assert str(again) == "it went wrong"
    assert type(error_from_text(error_text(exc))) is cls


def test_unknown_names_fall_back_to_exit_code_then_unavailable() -> None:
    assert public_name(_QuerySyntax("x")) == "InvalidInput"
    assert type(error_for("Nonsense", NotFound.exit_code, "m")) is NotFound
    assert type(error_for(None, ConfigError.exit_code, "m")) is ConfigError
    assert type(error_for("Nonsense", 99, "m")) is Unavailable
    assert type(error_from_text("Nonsense: m")) is DppsError
