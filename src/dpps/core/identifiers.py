"""Data identifiers (DIDs): ``scope:name``, where name is a logical file name (LFN).

A DID never says where a copy lives. LFNs are restricted to a conservative character set so
that every LFN maps to a safe storage path on POSIX, S3 and grid storage alike, and so that
``@`` and ``:`` stay free to mark a version and a scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dpps.core.errors import InvalidInput

SCOPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,29}$")
_LFN_CHARS_RE = re.compile(r"^[A-Za-z0-9._+=,\-/]+$")
MAX_LFN_LENGTH = 1024
#: One path component: POSIX file systems allow 255 bytes (NAME_MAX), and a later version's
#: copy appends ``@vN`` (up to 11 characters) to the last one. Longer names failed only when a
#: copy was written, reported as an unavailable RSE.
MAX_COMPONENT_LENGTH = 240
#: Versions are positive 32-bit integers (the catalog's column).
MAX_VERSION = 2**31 - 1
#: The largest id of the catalog's 64-bit keys (events, transfers, rule locks, stage requests,
#: jobs, workflows and the WMS's history: migration 0008); the other tables' ids, a DID's
#: among them, end at 2^31 - 1.
MAX_ACTIVITY_ID = 2**63 - 1
_VERSION_RE = re.compile(r"^(?P<base>.*)@v(?P<version>[0-9]+)$")


def validate_scope(scope: str) -> str:
    if not SCOPE_RE.match(scope):
        raise InvalidInput(
            f"invalid scope {scope!r}: use 1-30 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return scope


def validate_lfn(lfn: str) -> str:
    """Return ``lfn`` unchanged if it is a valid logical file name, else raise InvalidInput."""
    if not lfn.startswith("/"):
        raise InvalidInput(f"invalid LFN {lfn!r}: it must start with '/'")
    if len(lfn) > MAX_LFN_LENGTH:
        raise InvalidInput(f"invalid LFN: longer than {MAX_LFN_LENGTH} characters")
    if not _LFN_CHARS_RE.match(lfn):
        bad = sorted({c for c in lfn if not _LFN_CHARS_RE.match(c)})
        raise InvalidInput(
            f"invalid LFN {lfn!r}: characters {''.join(bad)!r} are not allowed "
            "(use A-Z a-z 0-9 . _ + = , - /)"
        )
    parts = lfn.split("/")[1:]
    if lfn.endswith("/") or any(p == "" for p in parts):
        raise InvalidInput(f"invalid LFN {lfn!r}: empty path component")
    if any(p in (".", "..") for p in parts):
        raise InvalidInput(f"invalid LFN {lfn!r}: '.' and '..' components are not allowed")
    if any(len(p) > MAX_COMPONENT_LENGTH for p in parts):
        raise InvalidInput(
            f"invalid LFN: a path component is longer than {MAX_COMPONENT_LENGTH} characters "
            "(storage file systems allow 255, with room for a version suffix)"
        )
    return lfn


@dataclass(frozen=True, slots=True)
class DID:
    """A parsed data identifier; ``version`` is None for "the latest"."""

    scope: str
    name: str
    version: int | None = None

    def __str__(self) -> str:
        base = f"{self.scope}:{self.name}"
        return base if self.version is None else f"{base}@v{self.version}"


def parse_did(text: str, default_scope: str | None = None) -> DID:
    """Parse ``scope:name[@vN]``; a bare ``/lfn`` takes ``default_scope`` when given."""
    version: int | None = None
    m = _VERSION_RE.match(text)
    if m:
        text, digits = m["base"], m["version"]
        if not digits.strip("0"):
            raise InvalidInput(f"invalid version '@v{digits}': versions start at 1 (@v1)")
        if digits.startswith("0"):
            raise InvalidInput(f"invalid version '@v{digits}': write it without leading zeros")
        if len(digits) > 10 or int(digits) > MAX_VERSION:
            raise InvalidInput(f"invalid version '@v{digits}': at most {MAX_VERSION}")
        version = int(digits)
    if ":" in text:
        scope, _, name = text.partition(":")
    elif default_scope is not None:
        scope, name = default_scope, text
    else:
        raise InvalidInput(f"invalid DID {text!r}: expected 'scope:/lfn'")
    return DID(validate_scope(scope), validate_lfn(name), version)
