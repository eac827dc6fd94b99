"""Helpers for the contact vault's and the master rotation's tests: a second master key, apps
built with other keys over the same database and Redis, and the shared key ring put back as it
was after a test that rotates it (the other tests keep using the first key)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from sqlalchemy import delete, update

from gateway import create_app
from gateway.config import Config
from gateway.services import EXTENSION, Services
from store import keyring
from store.models import Base, PseudonymKey

from .conftest import TEST_MASTER_KEY

OLD_KEY = base64.urlsafe_b64decode(TEST_MASTER_KEY)
NEW_KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))
_RING = ("status", "secret", "created_at", "activates_at", "retired_at", "destroyed_at")


@contextmanager
def app_with(config: Config, master_key: bytes, previous: bytes | None) -> Iterator[Flask]:
    """Another process over the same database and Redis, given these master keys."""
    app = create_app(
        dataclasses.replace(config, master_key=master_key, master_key_previous=previous)
    )
    try:
        yield app
    finally:
        app.extensions[EXTENSION].db.dispose()


@contextmanager
def ring_restored(services: Services) -> Iterator[None]:
    """Whatever the test does to the key ring (rotations, destruction, another master key), the
    ring is as it was afterwards, and Redis with it."""
    with services.db.session() as session:
        saved = {
            key.id: {name: getattr(key, name) for name in (*_RING, "master_key_id")}
            for key in keyring.every_key(session)
        }
    try:
        yield
    finally:
        with services.db.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                if table.name != PseudonymKey.__tablename__:
                    connection.execute(table.delete())
            connection.execute(delete(PseudonymKey).where(PseudonymKey.id.not_in(list(saved))))
            connection.execute(update(PseudonymKey).values(status="previous"))
            for key_id, values in sorted(saved.items(), key=lambda item: item[1]["status"]):
                connection.execute(
                    update(PseudonymKey).where(PseudonymKey.id == key_id).values(**values)
                )
        services.redis.flushdb()
        services.mirror.rebuild()
