"""A throwaway PostgreSQL server for tests and benchmarks.

``TemporaryPostgres`` runs ``initdb`` into a fresh directory and starts a private server that
listens on 127.0.0.1 only, on a free port, with authentication ``trust`` for the ``postgres``
role. Started on a directory that already holds a server's data (a kept benchmark catalog),
it runs on that data instead of calling ``initdb``. It is stopped by its PID (never by name),
also at interpreter exit if a test session crashes. PostgreSQL refuses to run as root, so
when we are root every server command runs as the ``postgres`` OS user through ``runuser``.

Run ``python -m dpps.testing.postgres`` to start one by hand; it prints the SQLAlchemy URL and
serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

__all__ = ["TemporaryPostgres", "main", "postgres_available", "postgres_bin_dir", "process_alive"]

_PG_USER = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.NNNNN" needs 15 of them.
_MAX_SOCKET_DIR = 90


def _has_initdb(directory: Path) -> bool:
    return (directory / "initdb").is_file() and (directory / "pg_ctl").is_file()


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``/``postgres``, or None if not installed.

    Looks at ``$DPPS_PG_BIN``, then ``pg_config --bindir``, then
    ``/usr/lib/postgresql/*/bin`` (newest major version first), then ``initdb`` on ``PATH``.
    """
    env = os.environ.get("DPPS_PG_BIN")
    if env and _has_initdb(Path(env)):
        return Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and _has_initdb(Path(out)):
                return Path(out)

    def major(path: Path) -> int:
        name = path.parent.name
        return int(name) if name.isdigit() else -1

    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True):
        if _has_initdb(candidate):
            return candidate
    initdb = shutil.which("initdb")
    if initdb and _has_initdb(Path(initdb).parent):
        return Path(initdb).parent
    return None


def postgres_available() -> bool:
    """True if the PostgreSQL server binaries can be found."""
    return postgres_bin_dir() is not None


def process_alive(pid: int) -> bool:
    """True if ``pid`` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead postmaster is reparented to PID 1, which in containers may never reap it.
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    """True if ``user`` may traverse every ancestor directory of ``path`` (ACLs ignored)."""
    groups = {user.pw_gid} | set(os.getgrouplist(user.pw_name, user.pw_gid))
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


class TemporaryPostgres:
    """A private PostgreSQL server in ``base_dir``, bound to 127.0.0.1, for tests; with no
    ``base_dir``, in a temporary directory of its own that ``stop()`` removes.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``url`` is the SQLAlchemy
    URL of the ``postgres`` database; ``create_database()`` gives a new, empty database.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        allow: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        """``netns``/``host``: run inside that network namespace, listening on ``host`` there
        (the testbed's central catalog, reached over its WAN); ``allow``: a CIDR whose clients
        are trusted besides loopback (the testbed's WAN subnet); ``settings``: more server
        settings (e.g. statement logging, to count a client's round trips)."""
        self.settings = dict(settings or {})
        self.host = host
        self.netns = netns
        self.allow = allow
        self._requested_dir = None if base_dir is None else Path(base_dir)
        self._requested_port = port
        self._port = port or 0
        self._pid: int | None = None
        self._bin: Path | None = None
        self._work: Path | None = None
        self._own_work = False  # True if we made the work dir ourselves and must remove it
        self._sock: Path | None = None
        self._own_sock: Path | None = None
        self._user: pwd.struct_passwd | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int:
        """The postmaster's PID; only while the server runs."""
        if self._pid is None:
            raise RuntimeError("PostgreSQL server is not running")
        return self._pid

    @property
    def data_dir(self) -> Path:
        return self._workdir / "data"

    @property
    def log_file(self) -> Path:
        return self._workdir / "postgres.log"

    @property
    def url(self) -> str:
        return self._url("postgres")

    def start(self) -> None:
        """initdb (first time only) and start the server; RuntimeError with the log on failure."""
        if self._pid is not None:
            return
        self._bin = postgres_bin_dir()
        if self._bin is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL "
                "(e.g. apt-get install postgresql-15) or set DPPS_PG_BIN"
            )
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam(_PG_USER)
            except KeyError:
                raise RuntimeError(
                    "running as root, but PostgreSQL refuses to run as root and there is no "
                    f"'{_PG_USER}' OS user to run it as; create it: useradd --system {_PG_USER}"
                ) from None
        if self._work is None:
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():  # else: a kept server, reused
                self._initdb()
        self._prepare_socket_dir()
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            if not self._requested_port:
                self._port = _free_port()
            try:
                self._pg_ctl_start()
                break
            except RuntimeError as exc:
                # Another process may have taken the free port between our probe and the bind.
                if attempt + 1 == attempts or "bind" not in str(exc):
                    raise
        self._pid = self._read_pid()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGTERM/SIGKILL by PID). Safe to call twice."""
        atexit.unregister(self.stop)
        pid, self._pid = self._pid, None
        if pid is not None:
            self._shutdown(pid)
        if self._own_sock is not None:
            shutil.rmtree(self._own_sock, ignore_errors=True)
            self._own_sock = None
        if self._own_work and self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
            self._own_work = False

    def create_database(self, name: str | None = None) -> str:
        """Create a new, empty database (unique name unless given); return its SQLAlchemy URL."""
        name = name or f"dpps_{uuid.uuid4().hex[:16]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}: use [a-z_][a-z0-9_]*")
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=_PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database`` (its URL), closing its connections: a
        test session makes hundreds, about 8 MB each even when empty."""
        name = url.rsplit("/", 1)[-1]
        if not _DB_NAME.match(name) or name == "postgres":
            raise ValueError(f"not a database of create_database: {url!r}")
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=_PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    @property
    def _workdir(self) -> Path:
        if self._work is None:
            raise RuntimeError("PostgreSQL server has not been started")
        return self._work

    def _url(self, database: str) -> str:
        return f"postgresql+psycopg://{_PG_USER}@{self.host}:{self.port}/{database}"

    def _exe(self, name: str) -> str:
        assert self._bin is not None
        return str(self._bin / name)

    def _prepare_dirs(self) -> None:
        """Pick a work dir the server user can reach, create data/ and the socket dir."""
        work = self._requested_dir
        if work is not None:
            work.mkdir(parents=True, exist_ok=True)
        if work is None or (self._user is not None and not _traversable(work, self._user)):
            # e.g. pytest's /tmp/pytest-of-root is 0700: use a dir of our own under the tempdir.
            work = Path(tempfile.mkdtemp(prefix="dpps-pg-"))
            work.chmod(0o755)
            self._own_work = True
        self._work = work
        (work / "data").mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            for path in [work, *work.rglob("*")]:
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _prepare_socket_dir(self) -> None:
        sock = self._workdir / "sock"
        if len(str(sock)) > _MAX_SOCKET_DIR:
            sock = Path(tempfile.mkdtemp(prefix="dpps-pgs-"))
            self._own_sock = sock
        sock.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            os.chown(sock, self._user.pw_uid, self._user.pw_gid)
        self._sock = sock

    def _run(self, args: list[str], timeout: float = 120) -> str:
        """Run a server command (as the postgres user when root); RuntimeError on failure."""
        cmd = ["runuser", "-u", _PG_USER, "--", *args] if self._user is not None else args
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # cwd: the caller's cwd (e.g. /root) may be unreadable for the postgres user.
        proc = subprocess.run(
            cmd,
            cwd=self._workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def _initdb(self) -> None:
        # --no-sync: a throwaway server does not need its files flushed to disk.
        self._run(
            [
                self._exe("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                f"--username={_PG_USER}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        if self.allow is not None:
            with (self.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.write(f"host all all {self.allow} trust\n")

    def _pg_ctl_start(self) -> None:
        # fsync/synchronous_commit/full_page_writes off: fast and unsafe on power loss, which
        # does not matter for a throwaway test server whose data dies with it anyway.
        options = (
            f"-c listen_addresses={self.host} -p {self._port} "
            f"-c unix_socket_directories={shlex.quote(str(self._sock))} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        ) + "".join(f" -c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items())
        try:
            self._run(
                [
                    self._exe("pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                ],
                timeout=90,
            )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            tail = self._log_tail()
            # pg_ctl may have left a half-started postmaster behind: stop it by its PID.
            with contextlib.suppress(RuntimeError):
                self._shutdown(self._read_pid())
            raise RuntimeError(f"{exc}\n--- server log (tail) ---\n{tail}") from exc

    def _shutdown(self, pid: int) -> None:
        """pg_ctl stop; if the postmaster is still there, SIGTERM then SIGKILL it by PID."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(
                [
                    self._exe("pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                ],
                timeout=40,
            )
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not process_alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _read_pid(self) -> int:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise RuntimeError(f"no postmaster.pid in {self.data_dir}") from exc

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def main(argv: list[str] | None = None) -> int:
    """Start a throwaway server, print its URL, serve until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m dpps.testing.postgres", description=main.__doc__
    )
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="server directory (default: a temporary one, removed at exit)",
    )
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Started with '&' from a script, SIGINT is inherited as ignored: make Ctrl-C work anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        base = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dpps-")))
        server = stack.enter_context(TemporaryPostgres(base, port=args.port))
        print(server.url, flush=True)
        print(
            f"PostgreSQL pid {server.pid}, data in {server.data_dir}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        try:
            while process_alive(server.pid):
                time.sleep(1)
            print("PostgreSQL server exited", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
