"""The file-system side of the ACADA ingestion queue: triggers, per-file work, quarantine.

ACADA writes a file into the landing area and, once it is closed, a sibling trigger
``<file>.trigger`` (a symbolic link to the file's name). The trigger files *are* the queue:
the catalog holds no queue table, because a trigger that exists means "not yet taken in" and
its removal, the last step after the catalog transaction committed, means "done". A daemon
killed at any point therefore finds on restart exactly the work that is left, and the
catalog's unique names make a repeated registration a harmless "already present".

``inspect`` is the CPU- and I/O-heavy part (FITS checksums of every HDU, metadata, adler32 and
BLAKE3 of the bytes): a top-level function of picklable arguments that a process pool (or a
Dask executor) runs, returning a classification rather than raising, so nothing has to pickle
an exception.

A rejected file goes to the quarantine directory under the same relative path, next to a
``<name>.reason.json`` that says why. The reason file is written first (atomically), then the
file is renamed into place, so a crash between the steps is recognisable on restart: a trigger
whose file is gone but whose reason file exists is a quarantine to finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from dpps.bdms.registration import prepare_in_place
from dpps.catalog.dids import NewFile
from dpps.core.errors import (
    Conflict,
    DppsError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dpps.storage.rse import StorageElement

TRIGGER_SUFFIX = ".trigger"
REASON_SUFFIX = ".reason.json"
LOCK_NAME = ".dpps-ingest.lock"

Status = Literal["ok", "quarantine", "missing", "transient", "error"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """One queued file: its trigger, the file, its path relative to the landing root, and
    when the trigger appeared (the start of the trigger-to-registered latency)."""

    trigger: Path
    file: Path
    rel: str
    created: float


def scan_triggers(landing: Path) -> list[Trigger]:
    """Every trigger under ``landing``, oldest first; hidden directories are skipped."""
    found: list[Trigger] = []
    for directory, dirnames, filenames in os.walk(landing):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.endswith(TRIGGER_SUFFIX) or name.startswith("."):
                continue
            trigger = Path(directory) / name
            try:
                created = os.lstat(trigger).st_mtime
            except FileNotFoundError:
                continue  # removed while we looked
            file = trigger.with_name(name[: -len(TRIGGER_SUFFIX)])
            found.append(Trigger(trigger, file, file.relative_to(landing).as_posix(), created))
    found.sort(key=lambda t: (t.created, t.rel))
    return found


def trigger_for(landing: Path, file: Path) -> Trigger:
    """The queue entry of a file given by name (``dpps ingest --acada``), trigger or not."""
    file = Path(os.path.realpath(Path(file).parent)) / Path(file).name
    try:
        rel = file.relative_to(landing).as_posix()
    except ValueError:
        raise InvalidInput(f"{file} is not under the landing directory {landing}") from None
    trigger = file.with_name(file.name + TRIGGER_SUFFIX)
    try:
        created = os.lstat(trigger).st_mtime
    except FileNotFoundError:
        created = dt.datetime.now(dt.UTC).timestamp()
    return Trigger(trigger, file, rel, created)


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """What a worker needs to inspect files (picklable, sent with every task)."""

    rse_name: str
    rse_root: str
    scope: str
    rse_id: int
    algorithms: tuple[str, ...]
    required_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Inspection:
    status: Status
    new_file: NewFile | None = None
    reason: str = ""
    error_type: str = ""


@cache
def _storage(name: str, root: str) -> StorageElement:
    return StorageElement(name, root)


def refusal(path: Path, root: str) -> str | None:
    """Why the landing entry ``path`` may not be read at all, or None.

    Decided from the entry itself (``lstat``) and the directories above it, before anything
    opens it: a symbolic link is refused without reading what it points to (it could name
    any file the daemon can read, or a FIFO that blocks the worker forever), and so is
    anything but a regular file. A missing file is left to the usual "missing" report.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot examine it: {exc.strerror or exc}"
    if stat.S_ISLNK(mode):
        return f"{path} is a symbolic link: refused without reading what it points to"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(path.parent)
    if real_parent != real_root and not real_parent.startswith(real_root.rstrip("/") + "/"):
        return f"{path} lies outside the RSE root {root} through a symbolic link in its path"
    return None


def inspect(spec: WorkSpec, path: str, lfn: str) -> Inspection:
    """Verify, extract and checksum one file; classify what went wrong instead of raising."""
    refused = refusal(Path(path), spec.rse_root)
    if refused is not None:
        return Inspection("quarantine", reason=refused, error_type="PermissionDenied")
    try:
        new_file = prepare_in_place(
            Path(path),
            lfn,
            _storage(spec.rse_name, spec.rse_root),
            scope=spec.scope,
            rse_id=spec.rse_id,
            algorithms=spec.algorithms,
        )
    except NotFound as exc:
        return Inspection("missing", reason=str(exc), error_type="NotFound")
    except Unavailable as exc:
        return Inspection("transient", reason=str(exc), error_type="Unavailable")
    except (IntegrityFailure, InvalidInput, PermissionDenied) as exc:
        return Inspection("quarantine", reason=str(exc), error_type=type(exc).__name__)
    except DppsError as exc:
        return Inspection("error", reason=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a bug in extraction must not stop the queue: report, go on
        return Inspection("error", reason=f"{type(exc).__name__}: {exc}", error_type="Bug")
    missing = [
        k for k in spec.required_keys if new_file.columns.get(k) is None and k not in new_file.meta
    ]
    if missing:
        return Inspection(
            "quarantine",
            reason=f"missing required metadata: {', '.join(missing)}",
            error_type="InvalidInput",
        )
    return Inspection("ok", new_file)


def worker_init(parent: int) -> None:
    """Pool workers leave SIGINT to the daemon and die with it (Linux: PR_SET_PDEATHSIG), so a
    SIGKILLed daemon leaves no orphan behind (one would otherwise wait forever on its task
    queue). A parent that died before the signal was armed is caught by the ppid check."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    id: str
    rel: str
    dest: Path
    reason: str
    error_type: str
    lfn: str | None
    at: float


class Quarantine:
    """Rejected files, under their path relative to the landing root, each with its reason."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def reason_path(self, rel: str) -> Path:
        return self.root / (rel + REASON_SUFFIX)

    def put(
        self, source: Path, rel: str, reason: str, error_type: str, lfn: str | None
    ) -> QuarantineRecord:
        """Write the reason, then move the file (or the dangling trigger) beside it."""
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        record = QuarantineRecord(
            uuid.uuid4().hex,
            rel,
            dest,
            reason,
            error_type,
            lfn,
            dt.datetime.now(dt.UTC).timestamp(),
        )
        body = {
            "id": record.id,
            "path": rel,
            "lfn": lfn,
            "reason": reason,
            "error_type": error_type,
            "quarantined_at": dt.datetime.fromtimestamp(record.at, dt.UTC).isoformat(),
        }
        target = self.reason_path(rel)
        temp = target.with_name(f".{target.name}.{record.id}")
        temp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, target)
        if os.path.lexists(dest):  # a file of that name was quarantined before: keep both
            os.replace(dest, dest.with_name(f"{dest.name}.{record.id}.old"))
        try:
            os.rename(source, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(source, dest)  # another filesystem: copy, then unlink
        return record

    def find(self, rel: str) -> QuarantineRecord | None:
        """The record of a file quarantined earlier (its data file moved), if any."""
        path = self.reason_path(rel)
        dest = self.root / rel
        if not path.is_file() or not os.path.lexists(dest):
            return None
        try:
            body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            at = dt.datetime.fromisoformat(body["quarantined_at"]).timestamp()
            return QuarantineRecord(
                body["id"], rel, dest, body["reason"], body["error_type"], body.get("lfn"), at
            )
        except (OSError, ValueError, KeyError):
            return None


class LandingLock:
    """One ingestion queue per landing area, held with ``flock`` on a file inside it.

    Why a lock file and not a lease in the database: the work items are files in this one
    directory tree, not catalog rows, and the kernel releases an ``flock`` the moment its
    holder dies - SIGKILL included - so a restarted daemon never waits for a stale lease to
    expire. Parallelism comes from the pool inside the one instance."""

    def __init__(self, landing: Path) -> None:
        self.path = landing / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise Conflict(
                f"another ingestion queue holds the landing area {self.path.parent} "
                f"({holder}); one instance per landing area"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
