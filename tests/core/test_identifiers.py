"""DIDs and LFNs: what is accepted and what is refused, with the reason."""

from __future__ import annotations

import pytest

from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID, parse_did, validate_lfn


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctao:/a/b.fits", DID("ctao", "/a/b.fits")),
        ("/a/b.fits", DID("ctao", "/a/b.fits")),
        ("user.jdoe:/x.h5@v3", DID("user.jdoe", "/x.h5", 3)),
        (
            "ctao:/dl0/TEL001_SDH001_20261121T200000_SBID0000000001.fits.fz",
            DID("ctao", "/dl0/TEL001_SDH001_20261121T200000_SBID0000000001.fits.fz"),
        ),
    ],
)
def test_parse_did(text: str, expected: DID) -> None:
    assert parse_did(text, "ctao") == expected
    assert parse_did(str(expected)) == expected


@pytest.mark.parametrize(
    ("lfn", "reason"),
    [
        ("relative/x", "start with '/'"),
        ("/a/../b", "'..'"),
        ("/a/./b", "'.'"),
        ("/a//b", "empty"),
        ("/a/b/", "empty"),
        ("/a b", "not allowed"),
        ("/a\x00b", "not allowed"),
        ("/caf\udce9", "not allowed"),
        ("/x@v2", "not allowed"),
        ("/" + "a" * 1100, "longer"),
    ],
)
def test_invalid_lfns(lfn: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace(".", r"\.")):
        validate_lfn(lfn)


def test_bad_scope_and_missing_scope() -> None:
    with pytest.raises(InvalidInput, match="scope"):
        parse_did("Bad Scope:/x")
    with pytest.raises(InvalidInput, match="scope:/lfn"):
        parse_did("/x")
