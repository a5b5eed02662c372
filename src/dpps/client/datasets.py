"""``archive.datasets`` over REST: what ``dpps dataset`` works on with ``DPPS_URL`` set.

The server answers with the library's ``FileInfo`` fields (``FileOut``), so the remote CLI
prints what the local one does; refusals come back as the same exception classes (a closed
dataset is ``Conflict``, an unknown DID ``NotFound``). Content is fetched a page at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from dpps.bdms.types import FileInfo, Page
from dpps.client.views import Transport, load
from dpps.core.identifiers import DID

DATASETS = "/api/v1/datasets"
PAGE = 1000


class RemoteDatasets:
    """``DatasetsAPI`` (``dpps.bdms.api_types``) over REST; the server checks the rights."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def add_dataset(self, did: str | DID, *, meta: Mapping[str, str] | None = None) -> FileInfo:
        return self._add(did, "DATASET", meta)

    def add_container(self, did: str | DID, *, meta: Mapping[str, str] | None = None) -> FileInfo:
        return self._add(did, "CONTAINER", meta)

    def _add(self, did: str | DID, kind: str, meta: Mapping[str, str] | None) -> FileInfo:
        body = {"did": str(did), "type": kind, "meta": dict(meta or {})}
        return load(FileInfo, self.remote._json("POST", DATASETS, json=body))

    def attach(
        self,
        parent: str | DID,
        children: Sequence[str | DID],
        *,
        ignore_duplicates: bool = False,
    ) -> list[str]:
        body = {
            "parent": str(parent),
            "dids": [str(c) for c in children],
            "ignore_duplicates": ignore_duplicates,
        }
        return [str(d) for d in self.remote._json("POST", f"{DATASETS}/attach", json=body)["dids"]]

    def detach(self, parent: str | DID, children: Sequence[str | DID]) -> list[str]:
        body = {"parent": str(parent), "dids": [str(c) for c in children]}
        return [str(d) for d in self.remote._json("POST", f"{DATASETS}/detach", json=body)["dids"]]

    def close(self, did: str | DID) -> FileInfo:
        return self._status(did, False)

    def reopen(self, did: str | DID) -> FileInfo:
        return self._status(did, True)

    def _status(self, did: str | DID, is_open: bool) -> FileInfo:
        body = {"did": str(did), "open": is_open}
        return load(FileInfo, self.remote._json("POST", f"{DATASETS}/status", json=body))

    def list_content(
        self,
        did: str | DID,
        *,
        recursive: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FileInfo]:
        path = f"{DATASETS}/content/{quote(str(did), safe='/:@+=,')}"
        out: list[Any] = []
        while limit is None or len(out) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(out))
            params = {"recursive": recursive, "limit": want, "offset": offset + len(out)}
            items = self.remote._json("GET", path, params=params)["items"]
            out.extend(items)
            if len(items) < want:
                break
        return load(list[FileInfo], out)

    def content_listing(
        self, did: str | DID, *, recursive: bool = False, limit: int = 1000, offset: int = 0
    ) -> Page[FileInfo]:
        """``list_content`` from ``offset`` with how many the DID holds in all (counted once,
        with the first of the server's pages)."""
        path = f"{DATASETS}/content/{quote(str(did), safe='/:@+=,')}"
        want = min(PAGE, limit)
        params = {"recursive": recursive, "limit": want, "offset": offset, "count": True}
        data = self.remote._json("GET", path, params=params)
        items = load(list[FileInfo], data["items"])
        if len(items) == want < limit:
            items += self.list_content(
                did, recursive=recursive, limit=limit - want, offset=offset + want
            )
        return Page(items, int(data["total"]), offset, limit)
