"""The schema comes only from Alembic migrations, and they match the ORM models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from dpps.bdms.archive import Archive
from dpps.catalog.engine import (
    VERSION_TABLE,
    current_revision,
    head_revision,
    known_revision,
    make_engine,
    upgrade,
)
from dpps.catalog.models import Base
from dpps.core.errors import Conflict


def test_upgrade_creates_the_schema_and_matches_models(catalog_url: str) -> None:
    engine = make_engine(catalog_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"dids", "replicas", "rses", "rules", "accounts", "events", "attachments"} <= tables
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        upgrade(engine)  # idempotent
    finally:
        engine.dispose()


def test_revision_check_agrees_with_alembic_at_every_step(catalog_url: str) -> None:
    """``current_revision``/``head_revision`` read the version table and the scripts without
    Alembic (issue 14: a faster CLI start); Alembic's own answers must be the same, before
    the schema exists, at each intermediate revision and at the head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dpps.catalog import engine as engine_mod

    engine = make_engine(catalog_url)
    try:
        cfg: Config = engine_mod._alembic_config(engine)
        script = ScriptDirectory.from_config(cfg)
        assert engine_mod._head_from_scripts() == script.get_current_head()
        assert head_revision(engine) == script.get_current_head()
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
        assert current_revision(engine) is None
        for step in reversed([s.revision for s in script.walk_revisions()]):
            upgrade(engine, step)
            with engine.connect() as conn:
                alembic_says = MigrationContext.configure(conn).get_current_revision()
            assert current_revision(engine) == alembic_says == step
    finally:
        engine.dispose()


def test_a_catalog_migrated_by_a_newer_dpps_is_refused_untouched(archive: Archive) -> None:
    """A site process left on an older release meets a catalog a newer release has migrated:
    it refuses, naming both revisions and what to do, and changes nothing (no downgrade, no
    failed migration half applied)."""
    with archive.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00dcafe0001'"))
    with pytest.raises(Conflict, match=r"f00dcafe0001.*newer than this dpps.*upgrade dpps"):
        archive.prepare_catalog()
    assert current_revision(archive.engine) == "f00dcafe0001"
    assert known_revision(head_revision(archive.engine) or "") is True
