"""Network namespaces, veth links, the WAN bridge and shaping, through the ``ip``/``tc``/``nft``
tools of iproute2 and nftables.

The tools are the interface every Linux administrator reads, and each call is a few
milliseconds, so a six-center testbed is built in well under a second with no netlink code of
our own. Everything here acts on namespaces named with :data:`PREFIX`, so ``down`` can find what
a crashed ``up`` left behind; nothing acts on the host's own namespace.

Two helpers serve later stages (scenarios, faults): :func:`popen_in` starts a process inside a
namespace and :func:`link_counters` reads a link's byte counters there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpps.core.errors import DppsError, Unavailable

#: Every namespace the testbed creates starts with this.
PREFIX = "dpps-tb-"
#: Namespaces live here (``ip netns add`` bind-mounts them).
NETNS_DIR = Path("/run/netns")


class TestbedError(DppsError):
    """A network operation of the testbed failed (the tool's own message follows)."""

    exit_code = 9
    title = "Testbed error"


def require_tools() -> None:
    """Unavailable naming the missing tools: ``ip`` and ``tc`` (iproute2), ``nft``."""
    missing = [tool for tool in ("ip", "tc", "nft") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(
            f"the testbed needs {', '.join(missing)} (iproute2, nftables): run "
            "scripts/testbed-deps.sh as root"
        )


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a tool, return its stdout; TestbedError with its stderr when it fails."""
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}"
        raise TestbedError(f"{' '.join(argv)}: {detail}")
    return proc.stdout


def namespaces(prefix: str = PREFIX) -> list[str]:
    """The existing namespaces whose name starts with ``prefix``."""
    out = run(["ip", "-json", "netns", "list"]).strip()
    found = json.loads(out) if out else []
    return sorted(str(n["name"]) for n in found if str(n["name"]).startswith(prefix))


def add_namespace(name: str) -> None:
    """A new namespace with its loopback up (TestbedError if it exists)."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def pids_in(name: str) -> list[int]:
    """PIDs of the processes running in a namespace."""
    try:
        out = run(["ip", "netns", "pids", name])
    except TestbedError:
        return []
    return [int(p) for p in out.split()]


def delete_namespace(name: str) -> None:
    """Remove a namespace (its veth ends go with it; the peers vanish too)."""
    if name in namespaces(name):
        run(["ip", "netns", "delete", name])


def command_in(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]


def popen_in(name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process inside a namespace (its own session, so a Ctrl-C meant for the caller
    does not reach it); the caller records ``.pid`` and stops it by that PID."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(command_in(name, argv), **kwargs)


def add_veth(name: str, ns: str, peer: str, peer_ns: str, *, address: str | None = None) -> None:
    """A veth pair created directly in two namespaces (nothing appears in the host's); the
    ``peer`` end gets ``address`` (CIDR) when given. Both ends are brought up."""
    run(
        [
            "ip",
            "link",
            "add",
            name,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            peer_ns,
        ]
    )
    if address:
        run(["ip", "-n", peer_ns, "addr", "add", address, "dev", peer])
    run(["ip", "-n", peer_ns, "link", "set", peer, "up"])
    run(["ip", "-n", ns, "link", "set", name, "up"])


def add_bridge(ns: str, name: str) -> None:
    run(["ip", "-n", ns, "link", "add", name, "type", "bridge"])
    run(["ip", "-n", ns, "link", "set", name, "up"])


def attach(ns: str, link: str, bridge: str) -> None:
    run(["ip", "-n", ns, "link", "set", link, "master", bridge])


def shape(ns: str, link: str, rate_mbit: float) -> None:
    """Cap a link's egress with a token bucket.

    The burst holds at least 256 KiB: veth hands over GSO super-packets of up to 64 KiB, and
    tbf drops any packet larger than its bucket. ``latency`` bounds the queue (200 ms); netem
    is not in these kernels, so round-trip delay comes from the delay proxy instead.
    """
    rate_bytes = rate_mbit * 1e6 / 8
    burst = max(256 * 1024, int(rate_bytes / 50))
    run(
        [
            "tc",
            "-n",
            ns,
            "qdisc",
            "replace",
            "dev",
            link,
            "root",
            "tbf",
            "rate",
            f"{rate_mbit:g}mbit",
            "burst",
            str(burst),
            "latency",
            "200ms",
        ]
    )


def qdiscs(ns: str) -> str:
    """``tc qdisc show`` inside a namespace (the shaping in place)."""
    return run(["tc", "-n", ns, "qdisc", "show"])


def addresses(ns: str) -> list[str]:
    """IPv4 addresses (CIDR) configured inside a namespace."""
    out = json.loads(run(["ip", "-n", ns, "-json", "addr", "show"]) or "[]")
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in out
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]


def nft_apply(ns: str, ruleset: str) -> None:
    run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=ruleset)


def link_counters(ns: str, link: str) -> dict[str, int]:
    """Byte and packet counters of a link as seen inside its namespace (``ip -s``: the same
    numbers as ``/sys/class/net/LINK/statistics`` there)."""
    out = json.loads(run(["ip", "-n", ns, "-s", "-json", "link", "show", "dev", link]))
    stats = out[0]["stats64"]
    return {
        "rx_bytes": int(stats["rx"]["bytes"]),
        "tx_bytes": int(stats["tx"]["bytes"]),
        "rx_packets": int(stats["rx"]["packets"]),
        "tx_packets": int(stats["tx"]["packets"]),
    }


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Switch the calling thread into namespace ``ns`` and back.

    A socket belongs to the namespace it was created in, so a socket made here stays there
    after the switch back: that is how the test process and the proxies reach a server inside
    a namespace without a route from the host.
    """
    with (
        open(f"/proc/{os.getpid()}/task/{_tid()}/ns/net", "rb") as home,
        open(NETNS_DIR / ns, "rb") as target,
    ):
        os.setns(target.fileno(), os.CLONE_NEWNET)
        try:
            yield
        finally:
            os.setns(home.fileno(), os.CLONE_NEWNET)


def socket_in(ns: str | None, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket created inside ``ns`` (or here when ``ns`` is None)."""
    if ns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    with inside(ns):
        return socket.socket(family, socket.SOCK_STREAM)


def connect_in(ns: str | None, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection made from inside ``ns`` (nft rules of ``ns`` apply to it)."""
    sock = socket_in(ns)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _tid() -> int:
    return int(getattr(os, "gettid", os.getpid)())
