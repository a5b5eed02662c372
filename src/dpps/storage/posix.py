"""POSIX file-system steps of a storage element: what publishing an immutable file safely
needs (a link that never replaces, a durable directory entry) and the checks that keep a path
inside its root. Plain functions on paths, kept apart from ``storage.rse`` (which decides
when to use them) so the RSE class stays one job: the storage's interface.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress

from dpps.core.errors import Conflict


def is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` leads to, None when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def mkdirs_below(root: str, directory: str) -> None:
    """Create ``directory`` and the missing directories between it and ``root``, which must
    exist already (FileNotFoundError otherwise)."""
    rel = os.path.relpath(directory, root)
    path = root
    for part in rel.split(os.sep):
        path = os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise


def link_no_replace(temp: str, final: str, *, sync_dir: bool = True) -> None:
    """Publish ``temp`` as ``final`` atomically, failing if ``final`` appeared meanwhile."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise Conflict(f"{final} already exists; files are immutable") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links on this filesystem: a plain rename, with a (racy) existence check.
        if os.path.lexists(final):
            raise Conflict(f"{final} already exists; files are immutable") from None
        os.rename(temp, final)
    else:
        os.unlink(temp)
    if sync_dir:
        fsync_dir(os.path.dirname(final))


def fsync_dir(directory: str) -> None:
    """Make a directory's entries (files published into it) durable; a file system that
    cannot fsync a directory is left as it is."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
