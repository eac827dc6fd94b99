"""Migration 0004_vault down and up again on the test database (SQLite or PostgreSQL): the
contacts table and the keys' master key ids go and come back, and the key ring still opens;
and a rotation seed above int4 kept through a grace migration."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, select, update

from store import keyring, migration
from store.models import PseudonymKey, Worker, Workplace

from ..support import add_workplace


def schema(services) -> tuple[set[str], set[str], str]:
    inspector = inspect(services.db.engine)
    keys = {column["name"] for column in inspector.get_columns("pseudonym_keys")}
    seed = next(c for c in inspector.get_columns("workers") if c["name"] == "seed")
    return set(inspector.get_table_names()), keys, str(seed["type"])


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
        tables, key_columns, seed = schema(services)
        assert "contacts" in tables and "master_key_id" in key_columns
        if services.db.dialect == "postgresql":
            assert seed == "BIGINT"
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


def test_a_grace_migration_keeps_a_seed_above_int4(services):
    """A seed is the first 32 bits of a pseudonym, unsigned: PostgreSQL's int4 refused half of
    them, and with them the move."""
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
    with services.db.session() as session:
        assert session.get(Worker, "n" * 64).seed == 0xFFFFFFFF
