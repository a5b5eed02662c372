"""``archive.datasets``: datasets and containers, as a sub-API of the ``Archive`` facade.

Each method is one transaction around the core functions of ``bdms.datasets`` and returns
plain records (``FileInfo``, labels), never ORM rows; ``dpps.client.datasets`` is its REST
twin and ``api_types.DatasetsAPI`` the Protocol both satisfy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import datasets
from dpps.bdms.archive import file_info
from dpps.bdms.types import FileInfo, Page, PageRequest
from dpps.catalog.engine import transaction
from dpps.core.config import Config
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import DIDType


class Datasets:
    """Create, fill, empty, close and list datasets and containers (Rucio's semantics:
    ``dpps.bdms.datasets``)."""

    def __init__(self, config: Config, sessions: sessionmaker[Session], account: str) -> None:
        self.config = config
        self.sessions = sessions
        self.account = account

    def _did(self, did: str | DID) -> DID:
        return did if isinstance(did, DID) else parse_did(did, self.config.default_scope)

    def add_dataset(self, did: str | DID, *, meta: Mapping[str, str] | None = None) -> FileInfo:
        """A new, open, empty dataset; Conflict if the name is taken."""
        return self._add(did, DIDType.DATASET, meta)

    def add_container(self, did: str | DID, *, meta: Mapping[str, str] | None = None) -> FileInfo:
        """A new, open, empty container; Conflict if the name is taken."""
        return self._add(did, DIDType.CONTAINER, meta)

    def _add(self, did: str | DID, did_type: DIDType, meta: Mapping[str, str] | None) -> FileInfo:
        parsed = self._did(did)
        with transaction(self.sessions) as session:
            row = datasets.create(session, parsed, did_type, account=self.account, meta=meta)
            session.flush()
            return file_info(row)

    def attach(
        self,
        parent: str | DID,
        children: Sequence[str | DID],
        *,
        ignore_duplicates: bool = False,
    ) -> list[str]:
        """Attach files to a dataset, or datasets and containers to a container; returns
        what was newly attached (rules on ``parent`` will replicate it too)."""
        kids = [self._did(c) for c in children]
        with transaction(self.sessions) as session:
            return datasets.attach(
                session,
                self._did(parent),
                kids,
                account=self.account,
                ignore_duplicates=ignore_duplicates,
            )

    def detach(self, parent: str | DID, children: Sequence[str | DID]) -> list[str]:
        """Detach members; rules on ``parent`` stop keeping them."""
        kids = [self._did(c) for c in children]
        with transaction(self.sessions) as session:
            return datasets.detach(session, self._did(parent), kids, account=self.account)

    def close(self, did: str | DID) -> FileInfo:
        """Close a dataset or container: no more attachments or detachments."""
        return self._set_open(did, False)

    def reopen(self, did: str | DID) -> FileInfo:
        """Open a closed dataset or container again."""
        return self._set_open(did, True)

    def _set_open(self, did: str | DID, is_open: bool) -> FileInfo:
        with transaction(self.sessions) as session:
            row = datasets.set_open(session, self._did(did), is_open, account=self.account)
            session.flush()
            return file_info(row)

    def list_content(
        self,
        did: str | DID,
        *,
        recursive: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FileInfo]:
        """Direct members by name, or (``recursive``) every file below - a file's own files
        being itself."""
        with self.sessions() as session:
            rows = datasets.content(
                session, self._did(did), recursive=recursive, limit=limit, offset=offset
            )
            return [file_info(r) for r in rows]

    def content_listing(
        self, did: str | DID, *, recursive: bool = False, limit: int = 1000, offset: int = 0
    ) -> Page[FileInfo]:
        """``list_content`` from ``offset`` with how many it holds in all (``dataset ls``)."""
        page = PageRequest(offset=offset, limit=limit)
        with self.sessions() as session:
            parsed = self._did(did)
            total = datasets.count_content(session, parsed, recursive=recursive)
            rows = datasets.content(
                session, parsed, recursive=recursive, limit=page.limit, offset=page.offset
            )
            return Page([file_info(r) for r in rows], total, page.offset, page.limit)
