"""Bytes on storage: checksums computed while copying, and storage elements (RSEs) over fsspec.

This package knows nothing of the catalog: it moves and verifies bytes under paths derived
from DIDs, and raises the errors of :mod:`dpps.core.errors`.
"""

from __future__ import annotations

from dpps.storage.checksums import (
    SUPPORTED,
    MultiHasher,
    checksum_file,
    checksum_stream,
    compare,
    copy_with_checksums,
)
from dpps.storage.rse import StorageElement

__all__ = [
    "SUPPORTED",
    "MultiHasher",
    "StorageElement",
    "checksum_file",
    "checksum_stream",
    "compare",
    "copy_with_checksums",
]
