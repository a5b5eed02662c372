"""A TCP delay proxy: the round-trip latency of the testbed's WAN, and a door into a namespace.

The kernels here have no netem, so the wire cannot delay packets. Instead every cross-site TCP
connection is redirected (nftables, in the namespace that opens it) to this proxy, which
connects on to the real destination and holds each chunk of data for half the path's RTT in
each direction. So that one stream sees the bandwidth-delay limit a real one does, the proxy
keeps at most ``window`` bytes in flight per direction and frees that credit one full RTT after
the bytes arrived (the time an acknowledgement would take): one stream then moves at most
``window / RTT``, like TCP with that window, and parallel streams add up to the link's cap.

Two modes, one process each:

* ``--transparent HOST:PORT``: the per-namespace WAN proxy. The original destination comes
  from ``SO_ORIGINAL_DST``; ``--delays`` maps destination addresses to the one-way delay;
  outgoing sockets carry ``SO_MARK`` :data:`MARK` so the redirect rule lets them pass.
* ``--forward LISTEN=NS:HOST:PORT``: listen here (e.g. 127.0.0.1 of the host) and connect from
  inside namespace ``NS``: how a test reaches a server that binds every interface of a private
  namespace (XRootD) while nothing but 127.0.0.1 listens in the host's namespace.

It prints ``ready`` once every listener is open; stop it by its PID (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
from dataclasses import dataclass, field

#: The packet mark of the proxy's own outgoing connections (they must not be redirected).
MARK = 0x7A11
#: getsockopt(SOL_IP, SO_ORIGINAL_DST): the address a redirected connection was meant for.
SO_ORIGINAL_DST = 80
#: Default bytes in flight per direction: about what Linux's default TCP buffers allow.
DEFAULT_WINDOW = 4 * 1024 * 1024
CHUNK = 256 * 1024


@dataclass
class Forward:
    """One listener of the forward mode."""

    listen: tuple[str, int]
    netns: str | None
    target: tuple[str, int]


@dataclass
class ProxyConfig:
    transparent: tuple[str, int] | None = None
    delays: dict[str, float] = field(default_factory=dict)  # destination IP -> one-way s
    default_delay: float = 0.0
    forwards: list[Forward] = field(default_factory=list)
    window: int = DEFAULT_WINDOW
    mark: int = MARK


async def relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay_s: float,
    window: int,
) -> None:
    """Copy one direction with ``delay_s`` of delay and ``window`` bytes of credit, the credit
    coming back ``2 * delay_s`` after the bytes came in."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    state = {"inflight": 0}
    room = asyncio.Event()
    room.set()

    def release(n: int) -> None:
        state["inflight"] -= n
        if state["inflight"] < window:
            room.set()

    async def pump_in() -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                state["inflight"] += len(data)
                arrived = loop.time()
                queue.put_nowait((arrived + delay_s, data))
                loop.call_at(arrived + 2 * delay_s, release, len(data))
                if state["inflight"] >= window:
                    room.clear()
                    await room.wait()
        finally:
            queue.put_nowait(None)

    async def pump_out() -> None:
        while True:
            item = await queue.get()
            if item is None:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    producer = asyncio.ensure_future(pump_in())
    try:
        await pump_out()
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
            await producer


async def _open_upstream(
    target: tuple[str, int], netns: str | None, mark: int | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    from dpps.testing.netns import socket_in

    sock = socket_in(netns)
    try:
        if mark is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, target)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=CHUNK)


async def _splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    netns: str | None,
    mark: int | None,
    delay_s: float,
    window: int,
) -> None:
    try:
        up_r, up_w = await _open_upstream(target, netns, mark)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(
            relay(client_r, up_w, delay_s, window),
            relay(up_r, client_w, delay_s, window),
            return_exceptions=True,
        )
    finally:
        for w in (up_w, client_w):
            w.close()
            with contextlib.suppress(OSError, ConnectionError):
                await w.wait_closed()


def original_destination(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


async def serve(config: ProxyConfig) -> list[asyncio.Server]:
    """Open every listener of ``config``; the servers run until cancelled."""
    servers: list[asyncio.Server] = []
    if config.transparent is not None:

        async def on_redirected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            sock = w.get_extra_info("socket")
            try:
                dest = original_destination(sock)
            except OSError:
                w.close()
                return
            delay = config.delays.get(dest[0], config.default_delay)
            await _splice(r, w, dest, None, config.mark, delay, config.window)

        host, port = config.transparent
        servers.append(await asyncio.start_server(on_redirected, host, port, limit=CHUNK))
    for fwd in config.forwards:

        async def on_forward(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, fwd: Forward = fwd
        ) -> None:
            await _splice(r, w, fwd.target, fwd.netns, None, 0.0, config.window)

        servers.append(
            await asyncio.start_server(on_forward, fwd.listen[0], fwd.listen[1], limit=CHUNK)
        )
    return servers


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def _forward(text: str) -> Forward:
    listen, sep, rest = text.partition("=")
    ns, sep2, target = rest.partition(":")
    if not sep or not sep2:
        raise argparse.ArgumentTypeError(f"expected LISTEN_HOST:PORT=NS:HOST:PORT, not {text!r}")
    return Forward(_hostport(listen), ns or None, _hostport(target))


def parse_args(argv: list[str] | None) -> ProxyConfig:
    parser = argparse.ArgumentParser(prog="python -m dpps.testbed.proxy", description=__doc__)
    parser.add_argument("--transparent", type=_hostport, default=None)
    parser.add_argument("--delays", default="{}", help='JSON {"dest-ip": one-way seconds}')
    parser.add_argument("--default-delay", type=float, default=0.0)
    parser.add_argument("--forward", type=_forward, action="append", default=[])
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    args = parser.parse_args(argv)
    if args.transparent is None and not args.forward:
        parser.error("give --transparent or at least one --forward")
    return ProxyConfig(
        transparent=args.transparent,
        delays={str(k): float(v) for k, v in json.loads(args.delays).items()},
        default_delay=args.default_delay,
        forwards=list(args.forward),
        window=args.window,
    )


async def _main(config: ProxyConfig) -> None:
    servers = await serve(config)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_main(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
