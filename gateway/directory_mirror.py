"""What puts the hops' cache (gateway/directory_cache.py) in Redis: the database.

- The ring and the directory follow the database: after every commit that changed a workplace
  or a key through the ORM (``workplace add``, ``workplace set``, ``db upgrade``, a rotation),
  the listener ``follow`` installs has them read again and replaced in Redis. Each replacement
  watches a generation counter across its database read, so a writer that read an older state
  than another writer can never overwrite the newer one.
- ``Mirror.rebuild`` (``workervoice cache rebuild``; ``db upgrade`` and the start of the web and
  the worker when the marker is missing; a job when a hop finds it missing) reads everything
  back. It only fills in missing profiles (hops wrote the newer ones), and never one whose
  worker has opted out since (the STOP's database delete may still be queued).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from store import directory, profiles
from store import keyring as stored_keys
from store.db import Database
from store.models import PseudonymKey, Workplace

from .directory_cache import (
    BUILT_KEY,
    DIRECTORY_KEY,
    GENERATION_KEY,
    KEYRING_KEY,
    PROFILE_KEY,
    REBUILD_QUEUED_KEY,
    REBUILDING_KEY,
    profile_json,
)
from .sessions import FORGOTTEN_KEY

log = logging.getLogger(__name__)

REBUILD_GUARD_SECONDS = 300
REBUILD_RETRY = Retry(max=10, interval=30)  # the database may be down when Redis came back empty
PROFILE_BATCH = 500
WRITE_TRIES = 10  # replacements that lost to a concurrent writer, tried again
KEYS, DIRECTORY = "keys", "directory"  # what a commit changed
_CHANGED = "workervoice.cache.changed"  # where a session notes it until its commit
_WATCHED: dict[type, str] = {Workplace: DIRECTORY, PseudonymKey: KEYS}

# Fill in missing profiles, skipping workers with a recent opt-out mark.
# KEYS: n profile keys, then their n opt-out marks; ARGV: the n profiles.
_FILL_PROFILES = """
local n, added = #ARGV, 0
for i = 1, n do
  if redis.call('exists', KEYS[n + i]) == 0 and redis.call('set', KEYS[i], ARGV[i], 'NX') then
    added = added + 1
  end
end
return added
"""

# (id, status, ciphertext, activates_at as epoch seconds, id of the master key the ciphertext is
# under or None if not recorded), newest first
KeyBlobs = list[tuple[int, str, bytes, float, str | None]]


@dataclass(frozen=True)
class Rebuilt:
    keys: int
    workplaces: int
    profiles: int  # profiles in the database
    added: int  # of which the cache was missing


class Mirror:
    """Writes the database's ring, directory and profiles into Redis."""

    def __init__(
        self,
        database: Database,
        redis: Redis,
        digest: Callable[[str], str],
        also: Sequence[Callable[[str], str]] = (),
    ):
        self.database = database
        self.redis = redis
        # Callback numbers are named under every master key held, so that processes not yet
        # given the new key during a master rotation still find them.
        self._digests = (digest, *also)
        self._fill = redis.register_script(_FILL_PROFILES)

    def key_blobs(self) -> KeyBlobs:
        """The live keys as Redis holds them (identity.KeyRing's loader). Only when Redis has
        lost them are they read from the database, and put back for every process."""
        raw = self.redis.get(KEYRING_KEY)
        if raw is not None:
            return _ring_from_json(raw)
        log.warning("the Redis cache holds no key ring: read from the database and put back")
        return self.publish_keys()

    def publish(self, changed: Iterable[str]) -> None:
        """Write what a commit changed (``KEYS``, ``DIRECTORY``) from the database to Redis."""
        changed = set(changed)
        if KEYS in changed:
            self.publish_keys()
        if DIRECTORY in changed:
            self.publish_directory()

    def publish_keys(self) -> KeyBlobs:
        def read() -> KeyBlobs:
            with self.database.session() as session:
                keys = stored_keys.live_keys(session)
                return [
                    (
                        k.id,
                        k.status,
                        k.secret,
                        _epoch(k.activates_at or k.created_at),
                        k.master_key_id,
                    )
                    for k in keys
                    if k.secret is not None
                ]

        def write(pipe: Any, ring: KeyBlobs) -> None:
            pipe.set(KEYRING_KEY, _ring_json(ring))

        return self._replace(read, write)

    def publish_directory(self) -> int:
        """Replace the directory with the database's; the number of workplaces."""

        def read() -> dict[str, str]:
            with self.database.session() as session:
                entries = directory.directory_entries(session)
            fields: dict[str, str] = {}
            for slug, code, zone, callback in entries:
                fields["code:" + code] = slug
                fields["zone:" + slug] = zone
                if callback:
                    for digest in self._digests:
                        fields["callback:" + digest(callback)] = slug
            return fields

        def write(pipe: Any, fields: dict[str, str]) -> None:
            pipe.delete(DIRECTORY_KEY)
            if fields:
                pipe.hset(DIRECTORY_KEY, mapping=fields)

        fields = self._replace(read, write)
        return sum(1 for name in fields if name.startswith("zone:"))

    def fill_profiles(self) -> tuple[int, int]:
        """Put every stored profile the cache is missing into it; (profiles seen, added)."""
        seen = added = 0
        with self.database.session() as session:
            for batch in _batches(profiles.every_profile(session), PROFILE_BATCH):
                keys = [PROFILE_KEY.format(p) for p, *_ in batch]
                marks = [FORGOTTEN_KEY.format(p) for p, *_ in batch]
                values = [
                    profile_json(language, slug, seed, licence)
                    for _, language, slug, seed, licence in batch
                ]
                added += int(self._fill(keys=keys + marks, args=values))
                seen += len(batch)
        return seen, added

    def rebuild(self) -> Rebuilt:
        """Read everything back from the database, then set the marker."""
        ring = self.publish_keys()
        workplaces = self.publish_directory()
        seen, added = self.fill_profiles()
        self.redis.set(BUILT_KEY, datetime.now(UTC).isoformat())
        log.info(
            "cache rebuilt from the database",
            extra={"keys": len(ring), "workplaces": workplaces, "profiles": seen, "added": added},
        )
        return Rebuilt(len(ring), workplaces, seen, added)

    def built(self) -> bool:
        return bool(self.redis.exists(BUILT_KEY))

    def ensure_built(self) -> Rebuilt | None:
        """Rebuild if the marker is missing and no other process is at it; None if not."""
        if self.built():
            return None
        if not self.redis.set(REBUILDING_KEY, b"1", nx=True, ex=REBUILD_GUARD_SECONDS):
            return None
        try:
            return self.rebuild()
        finally:
            self.redis.delete(REBUILDING_KEY)

    def _replace(self, read: Callable[[], Any], write: Callable[[Any, Any], None]) -> Any:
        """Write what ``read`` finds in the database, unless another writer wrote meanwhile:
        then read again (its state may be older than the one that writer read)."""
        for _ in range(WRITE_TRIES):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(GENERATION_KEY)
                    value = read()
                    pipe.multi()
                    write(pipe, value)
                    pipe.incr(GENERATION_KEY)
                    pipe.execute()
                    return value
                except WatchError:
                    continue
        raise RuntimeError("the cache kept changing while it was written: try again")


def _ring_json(ring: KeyBlobs) -> str:
    return json.dumps(
        [
            [kid, status, base64.b64encode(blob).decode(), activates, master_key_id]
            for kid, status, blob, activates, master_key_id in ring
        ]
    )


def _ring_from_json(raw: bytes | str) -> KeyBlobs:
    """The ring as written by ``_ring_json`` (an entry without its time, written before keys
    had one, took over when it was made; one without its master key id, written before
    those were recorded, is tried under each master key held)."""
    ring = []
    for entry in json.loads(raw):
        kid, status, blob = entry[:3]
        activates = float(entry[3]) if len(entry) > 3 else float("-inf")
        master_key_id = str(entry[4]) if len(entry) > 4 and entry[4] is not None else None
        ring.append((int(kid), str(status), base64.b64decode(blob), activates, master_key_id))
    return ring


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


# -- keeping it current ---------------------------------------------------------------------
def follow(database: Database, changed: Callable[[frozenset[str]], None]) -> None:
    """Call ``changed`` after every commit that changed a workplace or a pseudonym key through
    the ORM (objects, or ORM update/delete statements), with what it changed. A failure to
    write the cache is logged, not raised: the database change has been made."""
    sessions = database.sessions

    def note(session: Any, kinds: Iterable[str]) -> None:
        session.info.setdefault(_CHANGED, set()).update(kinds)

    @event.listens_for(sessions, "after_flush")
    def _flushed(session, _context) -> None:
        objects = chain(session.new, session.dirty, session.deleted)
        note(session, {_WATCHED[type(o)] for o in objects if type(o) in _WATCHED})

    @event.listens_for(sessions, "do_orm_execute")
    def _executed(state) -> None:
        if state.is_update or state.is_delete:
            note(
                state.session,
                {_WATCHED[m.class_] for m in state.all_mappers if m.class_ in _WATCHED},
            )

    @event.listens_for(sessions, "after_commit")
    def _committed(session) -> None:
        kinds = session.info.pop(_CHANGED, None)
        if not kinds:
            return
        try:
            changed(frozenset(kinds))
        except (RedisError, SQLAlchemyError) as exc:
            log.warning(
                "saved, but the Redis cache could not be updated (%s): "
                "run 'workervoice cache rebuild' once Redis answers",
                type(exc).__name__,
            )

    @event.listens_for(sessions, "after_rollback")
    def _rolled_back(session) -> None:
        session.info.pop(_CHANGED, None)


def warm(mirror: Mirror) -> None:
    """At a process's start: rebuild the cache if Redis lost it. A database or Redis that is
    down does not stop the process (hops answer from what the cache holds)."""
    try:
        rebuilt = mirror.ensure_built()
    except (RedisError, SQLAlchemyError) as exc:
        log.warning(
            "the cache could not be checked or rebuilt at start-up (%s): "
            "run 'workervoice cache rebuild' once the database and Redis answer",
            type(exc).__name__,
        )
        return
    if rebuilt is not None:
        log.info("the cache was missing: rebuilt at start-up")


def queue_rebuild(redis: Redis, queue: Queue) -> bool:
    """A hop found no marker: queue one rebuild (not one per hop); False if one is queued."""
    if not redis.set(REBUILD_QUEUED_KEY, b"1", nx=True, ex=REBUILD_GUARD_SECONDS):
        return False
    log.warning("the Redis cache has no marker: a rebuild from the database is queued")
    queue.enqueue(
        rebuild_job,
        job_id="cache-rebuild",
        description="rebuild the cache from the database",
        result_ttl=600,
        failure_ttl=7 * 86400,
        retry=REBUILD_RETRY,
    )
    return True


def rebuild_job() -> dict[str, int] | None:
    """RQ job: rebuild the cache unless it has been rebuilt meanwhile (safe to run twice)."""
    from .services import current

    rebuilt = current().mirror.ensure_built()
    return None if rebuilt is None else asdict(rebuilt)
