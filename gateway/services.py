"""The process's shared parts, built once from the config by the app factory.

Web, worker and CLI all get theirs through ``create_app`` (STYLE §6). Jobs reach them with
``current()`` inside the app context the worker pushes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from flask import current_app
from redis import Redis
from rq import Queue

from store import keyring as stored_keys
from store.db import Database

from . import directory_cache, directory_mirror, outbox, persistence, queues
from .audio import AudioLibrary
from .config import REPLY_CACHE_SECONDS, Config
from .crypto import Crypto
from .flows import FlowRegistry
from .identity import Identity, KeyRing, key_encrypter
from .sessions import SessionStore
from .vault import ContactVault

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
    # A new worker's daily rotation seed (gateway/conversation.py), injectable for tests that
    # need to know which questions come first.
    draw_seed: Callable[[], int] = field(default=lambda: secrets.randbits(32), repr=False)

    @cached_property
    def crypto(self) -> Crypto:
        return Crypto(self.config.master_key, self.config.master_key_previous)

    @cached_property
    def db(self) -> Database:
        database = Database(self.config.database_url)
        # A committed change to a workplace or a key reaches Redis, and this process's view, at
        # once; other processes' views within directory_cache.CACHE_SECONDS.
        directory_mirror.follow(database, self._database_changed)
        return database

    def _database_changed(self, changed: frozenset[str]) -> None:
        self.mirror.publish(changed)
        self.directory.forget_memory()

    @cached_property
    def mirror(self) -> directory_mirror.Mirror:
        """Writes the database's keys, workplaces and profiles into Redis for the hops."""
        return directory_mirror.Mirror(
            self.db, self.redis, self._number_digest, also=self._previous_number_digest
        )

    @cached_property
    def directory(self) -> directory_cache.DirectoryView:
        """Workplace codes, time zones and callback numbers, as the hops read them."""
        return directory_cache.DirectoryView(
            self.redis,
            self._number_digest,
            unbuilt=self._queue_rebuild,
            also=self._previous_number_digest,
        )

    @cached_property
    def profiles(self) -> directory_cache.ProfileCache:
        """Enrolled workers' profiles, as the hops read and write them."""
        return directory_cache.ProfileCache(self.redis, unbuilt=self._queue_rebuild)

    def _queue_rebuild(self) -> None:
        """A hop found the cache without its marker (Redis lost it)."""
        directory_mirror.queue_rebuild(self.redis, self.queues[queues.PERSIST])

    @cached_property
    def _number_digest(self) -> Callable[[str], str]:
        return directory_cache.number_digest(self.config.master_key)

    @cached_property
    def _previous_number_digest(self) -> tuple[Callable[[str], str], ...]:
        """The same under the master key being replaced, while a rotation is under way."""
        previous = self.config.master_key_previous
        return () if previous is None else (directory_cache.number_digest(previous),)

    @cached_property
    def redis(self) -> Redis:
        return connect_redis(self.config.redis_url)

    @cached_property
    def queues(self) -> dict[str, Queue]:
        """One RQ queue per kind of job (gateway/queues.py). Embedded default: no separate
        worker process, so jobs run in-process as they are queued."""
        return queues.make(self.redis, is_async=not self.config.embedded_redis)

    @cached_property
    def outbox(self) -> outbox.Outbox:
        """SMS replies waiting to go out through a provider's API."""
        return outbox.Outbox(self.redis, self.queues[queues.OUTBOUND])

    @cached_property
    def events(self) -> persistence.EventLog:
        """The event log the hops append to and the persist workers drain."""
        return persistence.EventLog(self.redis, self.queues[queues.PERSIST])

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
    def vault(self) -> ContactVault:
        """Contacts of workers who opted in, sealed under their pseudonyms (gateway/vault.py)."""
        return ContactVault(self.crypto, self.db, self.now)

    @cached_property
    def identity(self) -> Identity:
        return Identity(KeyRing(self.mirror.key_blobs, self.crypto))

    def ensure_key_ring(self) -> None:
        """Create the first key if there is none (it reaches Redis as the commit is made)."""
        with self.db.session() as session:
            stored_keys.ensure_current(session, key_encrypter(self.crypto))

    def now(self) -> datetime:
        return self.clock()


def current() -> Services:
    return current_app.extensions[EXTENSION]
