"""The schema comes only from Alembic migrations, and they match the ORM models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from dpps.catalog.engine import current_revision, head_revision, make_engine, upgrade
from dpps.catalog.models import Base


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
