"""The process's shared parts, built once from the config by the app factory.

Web, worker and CLI all get theirs through ``create_app`` (STYLE §6). Jobs reach them with
``current()`` inside the app context the worker pushes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from flask import current_app
from redis import Redis
from rq import Queue

from store import keyring as stored_keys
from store.db import Database
from store.directory import workplace_slug_for_code

from .config import REPLY_CACHE_SECONDS, Config
from .crypto import Crypto
from .flows import FlowRegistry
from .identity import KEY_PURPOSE, Identity, KeyRing, context
from .sessions import SessionStore

QUEUE_NAME = "workervoice"
EXTENSION = "workervoice"
_fake_server = None  # one in-process Redis emulation per process (embedded default)


def connect_redis(url: str | None) -> Redis:
    if url:
        return Redis.from_url(url)
    import fakeredis  # only for the embedded single-process default

    global _fake_server
    if _fake_server is None:
        _fake_server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=_fake_server)


@dataclass
class Services:
    config: Config

    @cached_property
    def crypto(self) -> Crypto:
        return Crypto(self.config.master_key)

    @cached_property
    def db(self) -> Database:
        return Database(self.config.database_url)

    @cached_property
    def redis(self) -> Redis:
        return connect_redis(self.config.redis_url)

    @cached_property
    def queue(self) -> Queue:
        # Embedded default: no separate worker process, so jobs run in-process as enqueued.
        return Queue(QUEUE_NAME, connection=self.redis, is_async=not self.config.embedded_redis)

    @cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.redis, self.config.session_ttl, REPLY_CACHE_SECONDS)

    @cached_property
    def registry(self) -> FlowRegistry:
        return FlowRegistry(self.config.flows_dir, self.config.locales_dir)

    @cached_property
    def identity(self) -> Identity:
        return Identity(KeyRing(self._load_keys, self.crypto))

    def _load_keys(self) -> list[tuple[int, str, bytes]]:
        with self.db.session() as session:
            keys = stored_keys.live_keys(session)
            return [(k.id, k.status, k.secret) for k in keys if k.secret is not None]

    def ensure_key_ring(self) -> None:
        with self.db.session() as session:
            stored_keys.ensure_current(
                session, lambda secret, kid: self.crypto.encrypt(secret, KEY_PURPOSE, context(kid))
            )

    def find_workplace(self, code: str) -> str | None:
        with self.db.session() as session:
            return workplace_slug_for_code(session, code)

    def now(self) -> datetime:
        return datetime.now(UTC)


def current() -> Services:
    return current_app.extensions[EXTENSION]
