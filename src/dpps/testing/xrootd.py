"""A throwaway XRootD server (Debian's ``xrootd-server``) for tests, benchmarks and the testbed.

``xrootd`` has no option to bind one address: it listens on every interface of its network
namespace. So it never runs in the host's own namespace. Given ``netns`` (a testbed data
center), it runs there and is reached at that namespace's address. Without it, the launcher
makes a private namespace holding nothing but a loopback, starts the server inside, and opens a
forwarding proxy (:mod:`dpps.testbed.proxy`) on 127.0.0.1 of the host with the same port: the
URL ``root://127.0.0.1:PORT`` then works from the host and from inside the namespace alike,
which third-party copies between two such servers (sharing one namespace) need.

The server refuses to run as root, so it runs as the ``xrootd`` user that the Debian package
creates; its directories are made here and handed to that user. It is configured with adler32
as its checksum (``xrdfs query checksum``) and third-party copy by ``xrdcp``. Everything is
stopped by PID; the private namespace is deleted.

Run ``python -m dpps.testing.xrootd`` to start one by hand (root only).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dpps.testing.postgres import process_alive

__all__ = ["XROOTD_USER", "TemporaryXRootD", "xrootd_available"]

XROOTD_USER = "xrootd"
#: Third-party copies a server runs at once (``ofs.tpc xfr``); more wait in its queue.
TPC_SLOTS = 128
#: Checksums a server computes at once (``xrootd.chksum max``).
CHECKSUM_SLOTS = 128
#: Private namespaces of this launcher (``down`` of the testbed leaves them alone).
PRIVATE_PREFIX = "dpps-xrd-"


def xrootd_available() -> str | None:
    """None when a server can be started here, else why not."""
    if os.geteuid() != 0:
        return "the XRootD server needs root (it runs in a network namespace of its own)"
    for tool in ("xrootd", "xrdcp", "ip"):
        if shutil.which(tool) is None:
            return (
                f"{tool!r} not found: run scripts/testbed-deps.sh (xrootd-server, xrootd-client)"
            )
    try:
        pwd.getpwnam(XROOTD_USER)
    except KeyError:
        return f"no {XROOTD_USER!r} user (the xrootd-server package creates it)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryXRootD:
    """An XRootD data server with one exported tree, adler32 checksums and third-party copy.

    ``url`` is ``root://HOST:PORT``; ``data_dir`` is the local directory behind ``/``.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        netns: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.netns = netns
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.private_netns: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"root://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "log" / "xrootd.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("XRootD is not running")
        return self._proc.pid

    @property
    def pids(self) -> list[int]:
        """Every process this launcher started (server, forwarder)."""
        return [p.pid for p in (self._proc, self._forwarder) if p is not None]

    def start(self, *, share_with: TemporaryXRootD | None = None) -> None:
        """Start the server; ``share_with`` puts it in that server's private namespace so the
        two can copy between each other (third-party copy) at their 127.0.0.1 URLs."""
        if self._proc is not None:
            return
        problem = xrootd_available()
        if problem:
            raise RuntimeError(problem)
        if self.netns is None:
            if share_with is not None and share_with.private_netns is not None:
                self.netns = share_with.private_netns
            else:
                self.private_netns = f"{PRIVATE_PREFIX}{uuid.uuid4().hex[:8]}"
                self.netns = self.private_netns
                _ip("netns", "add", self.private_netns)
                _ip("-n", self.private_netns, "link", "set", "lo", "up")
            if self.port is None:
                self.port = _free_port()
        elif self.port is None:
            self.port = 1094
        atexit.register(self.stop)
        try:
            self._launch()
            if self.host == "127.0.0.1" and self.netns is not None:
                self._start_forwarder()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def detach(self) -> list[int]:
        """Leave the processes running past this object (the testbed's ``down`` stops them
        by PID later); returns their PIDs."""
        atexit.unregister(self.stop)
        pids = self.pids
        self._proc = self._forwarder = None
        return pids

    def stop(self) -> None:
        """Stop every process by PID (SIGTERM, then SIGKILL) and drop a private namespace."""
        atexit.unregister(self.stop)
        for proc in (self._forwarder, self._proc):
            if proc is not None:
                _terminate(proc)
        self._proc = self._forwarder = None
        if self.private_netns is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", self.private_netns)
            self.private_netns = None

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

    def config_text(self) -> str:
        admin, run = self.base_dir / "admin", self.base_dir / "run"
        return "\n".join(
            [
                f"xrd.port {self.port}",
                "all.export /",
                f"oss.localroot {self.data_dir}",
                # adler32 of its own disk, computed for up to CHECKSUM_SLOTS requests at once:
                # beyond XRootD's default of 4 a request is told to come back in 30 s, which
                # stalled every transfer agent verifying many small copies in parallel
                f"xrootd.chksum max {CHECKSUM_SLOTS} adler32",
                # third-party copy: the destination server pulls with xrdcp, up to
                # TPC_SLOTS at once (XrdCl's client waits at least 2.5 s for every
                # third-party copy, so small files need many in flight to fill a link)
                f"ofs.tpc autorm xfr {TPC_SLOTS} pgm /usr/bin/xrdcp --server",
                f"all.adminpath {admin}",
                f"all.pidpath {run}",
                "",
            ]
        )

    def _launch(self) -> None:
        user = pwd.getpwnam(XROOTD_USER)
        for sub in ("data", "admin", "run", "log"):
            path = self.base_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
        _make_traversable(self.base_dir)
        config = self.base_dir / "xrootd.cfg"
        config.write_text(self.config_text(), encoding="utf-8")
        assert self.netns is not None
        argv = ["xrootd", "-R", XROOTD_USER, "-c", str(config), "-l", str(self.log_file)]
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base_dir / "stderr.txt", "ab"),  # noqa: SIM115 - child keeps it
            start_new_session=True,
        )

    def _start_forwarder(self) -> None:
        listen = f"127.0.0.1:{self.port}"
        self._forwarder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dpps.testbed.proxy",
                "--forward",
                f"{listen}={self.netns}:127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(self.base_dir / "forwarder.txt", "ab"),  # noqa: SIM115 - child keeps it
            start_new_session=True,
        )
        assert self._forwarder.stdout is not None
        line = self._forwarder.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the forwarding proxy did not start: {line!r}")

    def _wait_ready(self) -> None:
        from dpps.testing.netns import connect_in

        deadline = time.monotonic() + self.startup_timeout_s
        problem = "not started"
        target = "127.0.0.1" if self.private_netns or self.host == "127.0.0.1" else self.host
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"xrootd exited early:\n{self._log_tail()}")
            try:
                connect_in(self.netns, target, int(self.port or 0), timeout=1.0).close()
                return
            except OSError as exc:
                problem = str(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"xrootd not ready after {self.startup_timeout_s:.0f} s ({problem}):\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        texts = []
        for path in (self.log_file, self.base_dir / "stderr.txt"):
            with contextlib.suppress(OSError):
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts) or "(no server log)"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _make_traversable(path: Path) -> None:
    """Let the ``xrootd`` user reach its directories: o+x on the chain above them (mkdtemp
    and pytest make 0700 directories)."""
    for parent in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)


def _terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    if proc.stdout is not None:
        proc.stdout.close()
    if not process_alive(proc.pid):
        return


def main(argv: list[str] | None = None) -> int:
    """Start a throwaway XRootD server, print its URL, serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m dpps.testing.xrootd", description=main.__doc__
    )
    parser.add_argument("--dir", type=Path, required=True, help="server directory")
    args = parser.parse_args(argv)
    with TemporaryXRootD(args.dir) as server:
        print(server.url, flush=True)
        try:
            while process_alive(server.pid):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
