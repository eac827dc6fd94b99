"""Migration 0004_consent (the consent ledger, the tombstones): the schema the migrations build is
the models' own, and it goes down and up again, on SQLite and on PostgreSQL (whichever the run
uses; on PostgreSQL the test database itself goes down to 0004_vault and back to the head)."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from store.db import Database
from store.models import Base

from .test_jobs import key_id, persist

__all__ = ["key_id", "persist"]  # fixtures, used by name

NEW_TABLES = {"consents", "tombstones"}


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def _differences(db: Database) -> list:
    """What the migrated schema lacks or has beyond the models."""
    with db.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def _round_trip(db: Database) -> None:
    assert NEW_TABLES <= _tables(db)
    assert _differences(db) == []
    command.downgrade(db.alembic_config(), "0004_vault")
    assert not NEW_TABLES & _tables(db)
    db.upgrade()
    assert NEW_TABLES <= _tables(db)
    assert _differences(db) == []


def test_the_migration_matches_the_models_and_goes_down_and_up_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    db.upgrade()
    try:
        _round_trip(db)
    finally:
        db.dispose()


def test_the_migration_goes_down_and_up_on_the_test_database(services):
    """The run's own database: PostgreSQL when DATABASE_URL names it."""
    _round_trip(services.db)
