"""The process's shared parts, built once from the config by the app factory.

Web, worker and CLI all get theirs through ``create_app`` (STYLE §6). Jobs reach them with
``current()`` inside the app context the worker pushes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from flask import current_app
from redis import Redis
from rq import Queue

from store import keyring as stored_keys
from store.db import Database
from store.directory import workplace_slug_for_code
from store.profiles import timezone_of

from .audio import AudioLibrary
from .config import REPLY_CACHE_SECONDS, Config
from .crypto import Crypto
from .flows import FlowRegistry
from .identity import KEY_PURPOSE, Identity, KeyRing, context
from .sessions import SessionStore

QUEUE_NAME = "workervoice"
ZONE_CACHE_SECONDS = 60.0  # a workplace's time zone rarely changes; a minute's lag is harmless
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
    # The time, injectable: the demo spreads simulated answers over past days with it.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    _zones: dict[str, tuple[str | None, float]] = field(default_factory=dict, repr=False)

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
    def audio(self) -> AudioLibrary:
        return AudioLibrary(self.config.locales_dir, self.config.public_url)

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

    def workplace_zone(self, slug: str) -> str | None:
        """The workplace's time zone, cached for ZONE_CACHE_SECONDS: asked on every message."""
        now = time.monotonic()
        cached = self._zones.get(slug)
        if cached is not None and now - cached[1] < ZONE_CACHE_SECONDS:
            return cached[0]
        with self.db.session() as session:
            zone = timezone_of(session, slug)
        self._zones[slug] = (zone, now)
        return zone

    def find_workplace(self, code: str) -> str | None:
        with self.db.session() as session:
            return workplace_slug_for_code(session, code)

    def now(self) -> datetime:
        return self.clock()


def current() -> Services:
    return current_app.extensions[EXTENSION]
