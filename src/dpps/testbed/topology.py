"""The testbed's plan: which namespaces, which addresses, which links, which storage where.

A topology names the data centers (from ``dpps init``'s default: the observatory's six) and, per
center, its WAN link (``bandwidth_mbit``, ``rtt_ms``) and its storage protocols (``posix``,
``xrootd``, ``s3``, ``tape``). A link's ``rtt_ms`` is the round trip between the center and the
WAN core, so the RTT of a path between two centers is the sum of their two links' (La Palma to
Barcelona: 40 + 10 ms). The defaults resemble the observatory's network scaled to one machine:
the telescope sites on long-haul links (La Palma 40 ms, Paranal 180 ms from the core) at
200 Mbit/s, the European centers 1 Gbit/s and 10 ms, the central services 1 Gbit/s and 4 ms
(real links are 1-10 Gbit/s; the caps are scaled down so that one 2-core machine can fill them).

A topology file (``--topology FILE``) is YAML of the same shape as :data:`DEFAULT`, or the name
of a built-in one (``default``, ``small``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from dpps.core import defaults
from dpps.core.errors import InvalidInput
from dpps.testing.netns import PREFIX

#: Storage a data center can serve.
PROTOCOLS = ("posix", "xrootd", "s3", "tape")
#: The WAN's subnet (exists only inside the testbed's namespaces).
SUBNET = ipaddress.ip_network("10.213.0.0/24")
CENTRAL = "central"
WAN = "wan"

_LINK_DEFAULTS: dict[str, dict[str, Any]] = {
    "CTAO-North": {"bandwidth_mbit": 200.0, "rtt_ms": 40.0, "storage": ["posix"]},
    "CTAO-South": {"bandwidth_mbit": 200.0, "rtt_ms": 180.0, "storage": ["posix"]},
    "CSCS": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["s3"]},
    "DESY": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["xrootd", "tape"]},
    "FRASCATI": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["s3"]},
    "PIC": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["xrootd", "tape"]},
}

#: ``dpps init``'s six data centers with their links and storage.
DEFAULT: dict[str, Any] = {
    "central": {"bandwidth_mbit": 1000.0, "rtt_ms": 4.0},
    "sites": {
        name: {"onsite": bool(site.get("onsite", False)), **_LINK_DEFAULTS[name]}
        for name, site in defaults.SITES.items()
    },
}

#: Three centers: one telescope site, one XRootD center with tape, one S3 center.
SMALL: dict[str, Any] = {
    "central": {"bandwidth_mbit": 1000.0, "rtt_ms": 4.0},
    "sites": {
        "CTAO-North": {
            "onsite": True,
            "bandwidth_mbit": 200.0,
            "rtt_ms": 40.0,
            "storage": ["posix"],
        },
        "PIC": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["xrootd", "tape"]},
        "CSCS": {"bandwidth_mbit": 1000.0, "rtt_ms": 10.0, "storage": ["s3"]},
    },
}

BUILTIN = {"default": DEFAULT, "small": SMALL}

XROOTD_PORT = 1094
S3_PORTS = {
    "master.port": 9333,
    "master.port.grpc": 19333,
    "volume.port": 8080,
    "volume.port.grpc": 18080,
    "filer.port": 8888,
    "filer.port.grpc": 18888,
    "s3.port": 8333,
    "s3.port.grpc": 18333,
}


@dataclass(frozen=True)
class Node:
    """One namespace on the WAN: a data center or the central services."""

    name: str  # the data center's name, or "central"
    netns: str
    address: str  # on the WAN subnet, inside the namespace only
    link: str  # the namespace's end of its veth ("wan0")
    wan_link: str  # the other end, in the WAN namespace, attached to the bridge
    bandwidth_mbit: float
    rtt_ms: float
    onsite: bool = False
    storage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything ``up`` creates, derived from a topology alone (no side effects)."""

    wan_netns: str
    bridge: str
    nodes: tuple[Node, ...]
    prefixlen: int = SUBNET.prefixlen
    proxy_port: int = 15001

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise InvalidInput(f"no data center {name!r} in the testbed")

    @property
    def namespaces(self) -> list[str]:
        return [self.wan_netns, *(n.netns for n in self.nodes)]

    def path_rtt_ms(self, a: str, b: str) -> float:
        """Round trip between two nodes: the sum of their links' RTTs to the WAN core."""
        return self.node(a).rtt_ms + self.node(b).rtt_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(topology: str | Path | None) -> dict[str, Any]:
    """A topology: a built-in name, a YAML file, or the default."""
    if topology is None:
        return DEFAULT
    key = str(topology)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if not path.is_file():
        raise InvalidInput(f"topology {key!r} is neither a file nor one of {', '.join(BUILTIN)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"topology {path}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"topology {path}: expected a mapping with 'sites'")
    return data


def _number(where: str, value: Any, key: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise InvalidInput(
            f"topology: {where}.{key} must be a number >= {minimum:g}, not {value!r}"
        )
    return float(value)


def plan(topology: dict[str, Any]) -> Plan:
    """Validate a topology and derive the plan; InvalidInput names the first problem."""
    unknown_keys = set(topology) - {"central", "sites"}
    if unknown_keys:
        raise InvalidInput(f"topology: unknown key(s) {sorted(unknown_keys)}")
    sites = topology.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise InvalidInput("topology: 'sites' must map at least one data center")
    if len(sites) + 1 > SUBNET.num_addresses - 12:
        raise InvalidInput(f"topology: at most {SUBNET.num_addresses - 12} data centers")
    central = topology.get("central") or {}
    hosts = list(SUBNET.hosts())
    nodes = [
        Node(
            name=CENTRAL,
            netns=f"{PREFIX}{CENTRAL}",
            address=str(hosts[9]),
            link="wan0",
            wan_link="v-central",
            bandwidth_mbit=_number(
                CENTRAL, central.get("bandwidth_mbit", 1000.0), "bandwidth_mbit", 1
            ),
            rtt_ms=_number(CENTRAL, central.get("rtt_ms", 4.0), "rtt_ms", 0),
        )
    ]
    for index, (name, site) in enumerate(sites.items()):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}", str(name)) or name in (
            CENTRAL,
            WAN,
        ):
            raise InvalidInput(f"topology: bad data center name {name!r}")
        if not isinstance(site, dict):
            raise InvalidInput(f"topology: site {name!r} must be a mapping")
        extra = set(site) - {"onsite", "bandwidth_mbit", "rtt_ms", "storage"}
        if extra:
            raise InvalidInput(f"topology: site {name!r}: unknown key(s) {sorted(extra)}")
        storage = site.get("storage", ["posix"])
        if isinstance(storage, str) or not isinstance(storage, list):
            raise InvalidInput(f"topology: site {name!r}: storage must be a list")
        bad = [p for p in storage if p not in PROTOCOLS]
        if bad:
            raise InvalidInput(
                f"topology: site {name!r} names unknown protocol(s) {bad}; "
                f"known: {', '.join(PROTOCOLS)}"
            )
        if "tape" in storage and not {"xrootd", "s3"} & set(storage):
            raise InvalidInput(
                f"topology: site {name!r}: tape is emulated behind a disk server: "
                "add 'xrootd' or 's3' to its storage"
            )
        nodes.append(
            Node(
                name=str(name),
                netns=f"{PREFIX}{index}-{str(name).lower()}"[:40],
                address=str(hosts[10 + index]),
                link="wan0",
                wan_link=f"v-{index}",
                bandwidth_mbit=_number(
                    str(name), site.get("bandwidth_mbit", 1000.0), "bandwidth_mbit", 1
                ),
                rtt_ms=_number(str(name), site.get("rtt_ms", 10.0), "rtt_ms", 0),
                onsite=bool(site.get("onsite", False)),
                storage=tuple(dict.fromkeys(storage)),
            )
        )
    return Plan(wan_netns=f"{PREFIX}{WAN}", bridge="br-wan", nodes=tuple(nodes))
