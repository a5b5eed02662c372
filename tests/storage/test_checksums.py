"""Checksums against the reference implementations, over real files."""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from pathlib import Path
from typing import Any

import blake3
import pytest

from dpps.core.errors import InvalidInput
from dpps.storage import checksums
from dpps.storage.checksums import (
    DEFAULT_CHUNK_SIZE,
    SUPPORTED,
    MultiHasher,
    checksum_file,
    checksum_stream,
    compare,
    copy_with_checksums,
)


def reference(data: bytes) -> dict[str, str]:
    return {
        "adler32": f"{zlib.adler32(data):08x}",
        "blake3": blake3.blake3(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


SIZES = [0, 1, 4095, 256 * 1024, 1_000_003, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE * 2 + 17]


@pytest.mark.parametrize("size", SIZES)
def test_checksum_file_matches_references(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    nbytes, digests = checksum_file(path, SUPPORTED)
    assert nbytes == size
    assert digests == reference(data)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 300_000, 1 << 20])
def test_checksum_stream_any_chunk_size(chunk_size: int) -> None:
    data = os.urandom(1_234_567 if chunk_size > 1 else 5000)
    nbytes, digests = checksum_stream(io.BytesIO(data), ["adler32", "blake3"], chunk_size)
    assert nbytes == len(data)
    ref = reference(data)
    assert digests == {"adler32": ref["adler32"], "blake3": ref["blake3"]}


@pytest.mark.parametrize("algorithm", SUPPORTED)
def test_single_algorithm(tmp_path: Path, algorithm: str) -> None:
    data = os.urandom(3_000_001)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert checksum_file(path, [algorithm]) == (len(data), {algorithm: reference(data)[algorithm]})


def test_adler32_is_zero_padded() -> None:
    # adler32 of b"" is 1: eight digits, leading zeros kept
    assert MultiHasher(["adler32"]).hexdigests() == {"adler32": "00000001"}


def test_stream_without_readinto() -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._inner.read(min(n, 1000))  # short reads, not only at the end

    data = os.urandom(100_000)
    nbytes, digests = checksum_stream(ReadOnly(data), ["md5"], 4096)  # type: ignore[arg-type]
    assert (nbytes, digests) == (len(data), {"md5": reference(data)["md5"]})


def test_multihasher_incremental_equals_whole() -> None:
    data = os.urandom(2_500_000)
    hasher = MultiHasher(SUPPORTED)
    view = memoryview(data)
    for start in range(0, len(data), 700_001):
        hasher.update(view[start : start + 700_001])
    assert hasher.nbytes == len(data)
    assert hasher.hexdigests() == reference(data)


def test_duplicate_algorithms_are_computed_once() -> None:
    assert list(MultiHasher(["md5", "md5", "adler32"]).hexdigests()) == ["md5", "adler32"]


@pytest.mark.parametrize("algorithms", [["crc32"], ["adler32", "SHA-1"], [], "adler32"])
def test_unknown_algorithm_rejected(algorithms: list[str]) -> None:
    with pytest.raises(InvalidInput):
        MultiHasher(algorithms)
    with pytest.raises(InvalidInput):
        checksum_stream(io.BytesIO(b"x"), algorithms)


def test_checksum_file_rejects_unknown_algorithm_before_opening(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        checksum_file(tmp_path / "does-not-exist", ["nope"])


@pytest.mark.parametrize("size", [0, 10, DEFAULT_CHUNK_SIZE + 3])
def test_copy_with_checksums(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        nbytes, digests = copy_with_checksums(src, dst, ["adler32", "blake3", "sha256"])
    assert nbytes == size
    assert (tmp_path / "dst").read_bytes() == data
    ref = reference(data)
    assert digests == {k: ref[k] for k in ("adler32", "blake3", "sha256")}


def test_copy_to_raw_file_with_short_writes(tmp_path: Path) -> None:
    class Dribble(io.RawIOBase):
        """A raw writer that accepts at most 1000 bytes per call, as raw files may."""

        def __init__(self) -> None:
            self.out = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
            taken = bytes(b[:1000])
            self.out += taken
            return len(taken)

    data = os.urandom(1_000_000)
    dst = Dribble()
    copy_with_checksums(io.BytesIO(data), dst, ["adler32"], 300_000)  # type: ignore[arg-type]
    assert bytes(dst.out) == data


def test_copy_propagates_write_errors() -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        copy_with_checksums(io.BytesIO(os.urandom(2 << 20)), Broken(), ["adler32"])  # type: ignore[arg-type]


def test_read_error_mid_stream_propagates() -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            self.calls += 1
            if self.calls > 3:
                raise ConnectionResetError(104, "Connection reset by peer")
            b[:] = bytes(len(b))
            return len(b)

    with pytest.raises(ConnectionResetError):
        checksum_stream(Failing(), SUPPORTED, 300_000)  # type: ignore[arg-type]


def test_compare() -> None:
    expected = {"adler32": "0000ABCD", "blake3": "aa", "md5": "11"}
    actual = {"adler32": "0000abcd", "blake3": "bb", "sha256": "cc"}
    assert compare(expected, actual) == ["blake3"]
    assert compare({}, actual) == []
    assert compare(expected, {}) == []
    assert compare({"adler32": "0000abcd"}, {"adler32": "0000ABCD "}) == []


def test_adler32_falls_back_to_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    # zlib-ng is an optional speed-up: without it the stdlib's zlib gives the same values.
    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(checksums.importlib, "import_module", missing)
    fallback = checksums._fast_adler32()
    assert fallback is zlib.adler32
    data = os.urandom(100_000)
    assert fallback(data, 1) == checksums.adler32(data, 1) == zlib.adler32(data)


def test_hashing_in_the_callers_thread_gives_the_same_digests() -> None:
    # threads=False (the transfer daemon's copies): one algorithm after the other, per chunk
    data = os.urandom(3 * DEFAULT_CHUNK_SIZE + 11)
    got = checksum_stream(io.BytesIO(data), ["adler32", "blake3", "sha256"], threads=False)
    ref = reference(data)
    assert got == (len(data), {k: ref[k] for k in ("adler32", "blake3", "sha256")})
