"""Measuring the testbed's links: round-trip time and TCP throughput between two namespaces.

A small server runs inside the destination namespace (``python -m dpps.testbed.probe serve``:
it echoes one line, or swallows a stream and answers with the byte count), started and
stopped by PID; the client side runs in this process on sockets made inside the source
namespace, so the source's redirect to its delay proxy applies exactly as it does to any
process of that site.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dpps.testbed.lifecycle import stop_pids
from dpps.testing import netns

PORT = 15999
BLOCK = 1024 * 1024


@contextmanager
def server_in(ns: str, address: str, port: int = PORT) -> Iterator[int]:
    """A probe server inside ``ns`` on ``address:port``; yields its PID."""
    proc = netns.popen_in(
        ns,
        [sys.executable, "-m", "dpps.testbed.probe", "serve", address, str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the probe server in {ns} did not start")
        yield proc.pid
    finally:
        stop_pids([proc.pid])
        if proc.stdout is not None:
            proc.stdout.close()


def rtt_ms(src_ns: str, address: str, port: int = PORT, rounds: int = 5) -> list[float]:
    """Round trips of one line over one connection from ``src_ns`` (after the handshake)."""
    sock = netns.connect_in(src_ns, address, port, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    with sock, sock.makefile("rwb") as stream:
        for _ in range(rounds):
            start = time.perf_counter()
            stream.write(b"E\n")
            stream.flush()
            if stream.readline() != b"E\n":
                raise RuntimeError("the echo came back wrong")
            times.append((time.perf_counter() - start) * 1000)
    return times


def throughput_mbit(
    src_ns: str, address: str, total_bytes: int, streams: int = 1, port: int = PORT
) -> float:
    """Send ``total_bytes`` split over ``streams`` connections; Mbit/s from the first byte
    to the server's acknowledgement of the last."""
    per = total_bytes // streams
    socks = [netns.connect_in(src_ns, address, port, timeout=60) for _ in range(streams)]
    block = b"\0" * BLOCK
    errors: list[BaseException] = []

    def send(sock: socket.socket) -> None:
        try:
            sock.sendall(b"S%d\n" % per)
            left = per
            while left > 0:
                n = min(left, BLOCK)
                sock.sendall(block[:n])
                left -= n
            if sock.makefile("rb").readline().strip() != str(per).encode():
                raise RuntimeError("the sink counted a different number of bytes")
        except BaseException as exc:
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=send, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    if errors:
        raise errors[0]
    return per * streams * 8 / elapsed / 1e6


def _serve(address: str, port: int) -> None:
    listener = socket.create_server((address, port), backlog=64)
    print("ready", flush=True)

    def handle(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            while True:
                line = stream.readline()
                if not line:
                    return
                if line.startswith(b"S"):
                    want = int(line[1:])
                    got = 0
                    while got < want:
                        chunk = stream.read(min(BLOCK, want - got))
                        if not chunk:
                            return
                        got += len(chunk)
                    stream.write(b"%d\n" % got)
                else:
                    stream.write(line)
                stream.flush()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpps.testbed.probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="echo lines; count 'S<n>' streams")
    serve.add_argument("address")
    serve.add_argument("port", type=int)
    args = parser.parse_args(argv)
    _serve(args.address, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
