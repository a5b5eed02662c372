"""Catalog-only bulk registration of files already on an RSE, as remote clients ask for it.

The REST gateway's part only: which scopes a request writes (for the permission check) and the
call into the library. Checking the records, building the files and registering them - files,
replicas, dataset attachment and events, in one transaction - is
``dpps.bdms.registration.register_declared``, the archive's one registration path, so Python
callers get the same validation.
"""

from __future__ import annotations

from collections.abc import Sequence

from dpps.bdms import registration as bdms_registration
from dpps.bdms.archive import Archive
from dpps.bdms.records import RegisterOutcome, Registration


def scopes_of(archive: Archive, items: Sequence[Registration], dataset: str | None) -> set[str]:
    scopes = {item.scope or archive.config.default_scope for item in items}
    if dataset:
        scopes.add(archive.did(dataset).scope)
    return scopes


def register(
    archive: Archive, items: Sequence[Registration], dataset: str | None = None
) -> list[RegisterOutcome]:
    """Register ``items`` as ``archive.account``; one outcome per item, in order."""
    return bdms_registration.register_declared(
        archive.sessions,
        archive.config,
        items,
        account=archive.account,
        storage=archive.storage,
        dataset=dataset,
    )
