"""Migration 0004_vault down and up again on the test database (SQLite or PostgreSQL): the
contacts table and the keys' master key ids go and come back, and the key ring still opens;
and a grace migration carries nothing of the old pseudonym."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, select, update

from store import keyring, migration
from store.models import PseudonymKey, Worker, Workplace

from ..support import add_workplace


def schema(services) -> tuple[set[str], set[str], dict[str, str]]:
    """(tables, pseudonym_keys' columns, workers' columns with their types)."""
    inspector = inspect(services.db.engine)
    keys = {column["name"] for column in inspector.get_columns("pseudonym_keys")}
    workers = {c["name"]: str(c["type"]) for c in inspector.get_columns("workers")}
    return set(inspector.get_table_names()), keys, workers


def test_the_vault_migration_downgrades_and_upgrades(services):
    with services.db.session() as session:
        stamps = {key.id: key.master_key_id for key in keyring.every_key(session)}
    services.db.engine.dispose()  # no connection holds the tables
    config = services.db.alembic_config()
    try:
        command.downgrade(config, "0003")
        tables, key_columns, _ = schema(services)
        assert "contacts" not in tables and "master_key_id" not in key_columns
        command.upgrade(config, "head")
        tables, key_columns, workers = schema(services)
        assert "contacts" in tables and "master_key_id" in key_columns
        assert workers["seed"] == "BIGINT"  # 32 bits unsigned: more than int4 holds
        services.mirror.rebuild()
        assert services.identity.ring.current().id == max(stamps)  # names no master key: tried
    finally:
        with services.db.session() as session:
            for key_id, stamp in stamps.items():
                session.execute(
                    update(PseudonymKey)
                    .where(PseudonymKey.id == key_id)
                    .values(master_key_id=stamp)
                )
        services.mirror.rebuild()


def test_a_grace_migration_moves_the_profile_and_nothing_of_the_old_pseudonym(services):
    add_workplace(services)
    now = datetime.now(UTC)
    with services.db.session() as session:
        key = keyring.live_keys(session)[0].id
        place = session.scalar(select(Workplace.id))
        session.add(
            Worker(
                pseudonym="o" * 64,
                key_id=key,
                language="en",
                workplace_id=place,
                consented_at=now,
                updated_at=now,
            )
        )
    with services.db.session() as session:
        migration.move(session, "o" * 64, "n" * 64, key, key, 0xFFFFFFFF, now)
    with services.db.engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(select(Worker.__table__))]
    assert [(r["pseudonym"], r["language"], r["seed"]) for r in rows] == [
        ("n" * 64, "en", 0xFFFFFFFF)  # the worker's drawn seed, above int4
    ]
    assert not any("o" * 8 in repr(value) for value in rows[0].values())
