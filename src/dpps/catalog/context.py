"""What a daemon (or any worker below the facades) needs of an archive: config, sessions, account.

``Archive`` is the facade of the whole BDMS; a daemon uses three things of it. Handing it the
facade made every daemon module import ``dpps.bdms.archive`` for its type, and the archive
imports the packages those daemons live in: a type cycle through most of ``bdms``. A
``CatalogContext`` is the three things alone, so a daemon depends only on what lies below it.

It lives in ``catalog`` rather than ``core`` because it holds a catalog ``sessionmaker``, typed
as what it is (``core`` knows no SQLAlchemy, and a Protocol standing in for a sessionmaker would
need a cast at every ``write``); ``core.daemon`` never looks inside it, it only passes it from
the registry to the daemon's constructor. ``Archive.context`` builds one from the archive's
current configuration and account. The engine is the one the sessions are bound to: whoever
needs a facade again (the campaign daemon runs whole campaigns) builds one on that engine
instead of opening a second pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dpps.core.config import Config


@dataclass(frozen=True, slots=True)
class CatalogContext:
    """One deployment's configuration, catalog sessions and the account its work is done as."""

    config: Config
    sessions: sessionmaker[Session]
    account: str = "root"
    #: The RSEs a site process serves (``dpps daemon NAME --site/--rses``): the daemons that
    #: touch storage read, write and delete only these. ``None``: every configured RSE.
    rses: frozenset[str] | None = None

    @property
    def engine(self) -> Engine:
        """The engine the sessions are bound to (never a second connection pool)."""
        bind = self.sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the catalog sessions are not bound to an engine")
        return bind


def served(config: Config, rses: frozenset[str] | None) -> Config:
    """``config`` with only the RSEs a site process serves: what a daemon that walks the
    configured RSEs (auditor, stager) works from, so another site's storage is never in
    its reach."""
    if rses is None:
        return config
    return config.model_copy(update={"rses": {n: r for n, r in config.rses.items() if n in rses}})
