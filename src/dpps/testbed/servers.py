"""Storage servers per data center, inside its namespace, and the RSEs they serve.

* ``posix``: directories of the site (its RSE and, at a telescope site, the ACADA landing area);
* ``xrootd``: Debian's ``xrootd`` at the site's address, port 1094 (it binds every interface of
  the namespace, which holds only the site's own address and loopback);
* ``s3``: SeaweedFS with its S3 gateway bound to the site's address, port 8333;
* ``tape``: the existing tape emulation (``kind: tape`` with a staging delay) on a separate
  root of the site's XRootD server (else its S3 server).

Launchers are those of :mod:`dpps.testing`; the processes outlive ``up`` and are stopped by
PID by ``down``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpps.testbed.topology import S3_PORTS, XROOTD_PORT, Node

#: Staging delay of the emulated tape RSEs (the default topology's value).
TAPE_STAGING_DELAY_S = 2.0


@dataclass
class Started:
    """What starting one site's storage left running, and the RSEs it serves."""

    pids: dict[str, int] = field(default_factory=dict)
    rses: dict[str, dict[str, Any]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def site_dir(base: Path, node: Node) -> Path:
    return base / "sites" / node.name


def start_site(base: Path, node: Node) -> Started:
    """Start the storage of one data center; on failure, stop what was started and raise."""
    started = Started()
    root = site_dir(base, node)
    try:
        _start(root, node, started)
    except BaseException:
        from dpps.testbed.lifecycle import stop_pids

        stop_pids(list(started.pids.values()))
        raise
    return started


def _start(root: Path, node: Node, started: Started) -> None:
    disk_server: str | None = None
    if "posix" in node.storage:
        rse_dir, landing = root / "rse", root / "landing"
        rse_dir.mkdir(parents=True, exist_ok=True)
        started.paths["rse"] = str(rse_dir)
        if node.onsite:
            landing.mkdir(parents=True, exist_ok=True)
            started.paths["landing"] = str(landing)
        started.rses[node.name] = _rse(node, str(rse_dir), onsite=node.onsite)
    if "xrootd" in node.storage:
        from dpps.testing.xrootd import TemporaryXRootD

        xrd = TemporaryXRootD(
            root / "xrootd", netns=node.netns, host=node.address, port=XROOTD_PORT
        )
        xrd.start()
        started.pids[f"{node.name}/xrootd"] = xrd.detach()[0]
        for sub in ("disk", "tape"):
            (xrd.data_dir / sub).mkdir(exist_ok=True)
            _chown_like(xrd.data_dir / sub, xrd.data_dir)
        started.rses[f"{node.name}-XRD" if "posix" in node.storage else node.name] = _rse(
            node, f"{xrd.url}//disk"
        )
        disk_server = f"{xrd.url}//tape"
        started.paths["xrootd"] = str(xrd.data_dir)
    if "s3" in node.storage:
        from dpps.testing.seaweedfs import TemporarySeaweedFS

        # distinct ports per center: weed names unix sockets in the shared /tmp after them
        offset = int(node.address.rsplit(".", 1)[1])
        ports = {flag: port + offset for flag, port in S3_PORTS.items()}
        s3 = TemporarySeaweedFS(root / "s3", ip=node.address, netns=node.netns, ports=ports)
        s3.buckets = ["disk", "tape"]
        s3.start()
        started.pids[f"{node.name}/s3"] = s3.detach()
        options = s3.storage_options
        name = (
            node.name
            if "xrootd" not in node.storage and "posix" not in node.storage
            else f"{node.name}-S3"
        )
        started.rses[name] = _rse(node, "s3://disk", storage_options=options)
        if disk_server is None and "tape" in node.storage:
            disk_server = "s3://tape"
            started.rses[f"{node.name}-TAPE"] = _rse(
                node, "s3://tape", tape=True, storage_options=options
            )
    if "tape" in node.storage and disk_server is not None and disk_server.startswith("root://"):
        started.rses[f"{node.name}-TAPE"] = _rse(node, disk_server, tape=True)


def _rse(
    node: Node,
    url: str,
    *,
    onsite: bool = False,
    tape: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An RSE entry in ``dpps.yaml``'s shape (``rses:``)."""
    entry: dict[str, Any] = {
        "url": url,
        "site": node.name,
        "kind": "tape" if tape else "disk",
        "onsite": onsite,
        "attributes": {"type": "tape" if tape else "disk", "tier": 0 if onsite else 1},
    }
    if tape:
        entry["staging_delay_s"] = TAPE_STAGING_DELAY_S
    if storage_options:
        entry["storage_options"] = storage_options
    return entry


def _chown_like(path: Path, like: Path) -> None:
    import os

    st = like.stat()
    os.chown(path, st.st_uid, st.st_gid)
