"""The event log: what hops decided to keep, waiting in Redis, drained into the database in batches.

A hop never writes the database and never queues a job per message. It appends its events (one
entry per request: the pseudonym, the channel, the time and the events) to the Redis stream
``STREAM_KEY`` in the same Lua call that saves the session and caches the reply
(gateway/sessions.py), so a provider's retry can never append them twice, and it sets the
``armed`` mark of drainer slot 0. Only the hop that set the mark, the first after the log went
idle, queues a ``drain`` job on the ``persist`` queue: under load one job drains thousands of
answers.

A drain reads up to ``BATCH`` entries at a time through the consumer group ``GROUP``, as its
slot's consumer (the slot's unacknowledged entries first: a predecessor's, killed or out of
patience; then entries another slot left idle for ``CLAIM_IDLE_MS``; then new ones), writes
them with set-based upserts (store/jobs.write_batches), then acknowledges and deletes them. A
batch written twice, because a worker died between the commit and the acknowledgement, stores
nothing twice: every write is an idempotent upsert. While the database refuses connections the
entries stay in the stream and the drain keeps trying for its ``patience``, then hands over to
a successor job queued a moment later; nothing is ever given up, however long the outage. An
entry that cannot be written for any other reason (a bug, a malformed entry) is moved to
``DEAD_KEY`` alone, so it never holds back the rest.

Under steady load (a drain that found entries twice running) a drain that read less than a full
batch waits ``LINGER_SECONDS`` before it reads again, so that one transaction stores many hops'
answers (an answer waits that much longer; the goal is 10 s). A full batch wakes the next slot
(up to ``drainers`` at once, one per persist worker). A drain with nothing left clears its mark
and looks once more, so an entry appended meanwhile is never stranded; and every worker's
maintenance pass (gateway/queues.py) wakes slot 0 for entries waiting with no drain armed (its
mark expired with a killed worker).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from store.jobs import write_batches

log = logging.getLogger(__name__)

STREAM_KEY = "wv:events"
DEAD_KEY = "wv:events:dead"
ARMED_KEY = "wv:events:armed:{}"  # one per drainer slot
GROUP = "persist"
# One consumer per drainer slot, not per worker: the slot's next drain (a successor after an
# outage, or a new worker's after a kill) finds the entries left unacknowledged at once.
CONSUMER = "drain-{}"
FIELD = "batch"
BATCH = 1000  # entries (requests) per database transaction
LINGER_SECONDS = 0.5  # a drain's wait for more entries after a partial batch (Stream.linger)
DRAINERS = 2  # drains at once when the log is long: one per persist worker
ARMED_SECONDS = 15  # a killed drain's mark expires, and maintenance wakes a new one
CLAIM_IDLE_MS = 10_000  # an entry delivered this long ago and not acknowledged is taken over
PATIENCE_SECONDS = 20.0  # a drain job's time before it hands over to a successor
DEAD_SECONDS = 30 * 86400  # undrainable entries are kept for inspection this long
BACKOFF_SECONDS = (0.1, 0.25, 0.5, 1.0)  # between tries while the database is away
RETRY_SECONDS = 1.0  # a drain whose patience ran out in an outage: its successor's delay

Entry = tuple[bytes, dict]


@dataclass
class Drained:
    batches: int = 0
    entries: int = 0
    answers: int = 0
    profiles: int = 0
    forgotten: int = 0
    erased: int = 0
    consents: int = 0
    dead: int = 0
    outages: int = 0  # tries the database refused

    def add(self, counts: dict) -> None:
        self.answers += counts.get("answers", 0)
        self.profiles += counts.get("profiles", 0)
        self.forgotten += counts.get("forgotten", 0)
        self.erased += counts.get("erased", 0)
        self.consents += counts.get("consents", 0)


def encode(batch: dict) -> str:
    return json.dumps(batch, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Stream:
    """A Redis stream of work drained by RQ jobs (``job(slot, patience)``), and its keys."""

    key: str
    dead: str  # entries that could not be handled, kept for inspection
    armed: str  # "{}": the drainer slot
    group: str
    consumer: str  # "{}": the drainer slot
    job: Callable[..., dict]
    what: str  # how log lines and job descriptions name it
    batch: int
    claim_idle_ms: int
    drainers: int
    patience: float | None = None  # a drain's seconds before a successor (None: PATIENCE_SECONDS)
    # After a read that found less than a full batch, a drain (on a worker, never inline, and once
    # entries kept coming: Drainer._lingers) waits this long before reading again: under steady load
    # a batch then gathers many hops' entries, and its fixed cost (the reads, a transaction, the
    # acknowledgement) is shared.
    linger: float = 0.0


class EventLog:
    """A stream as the web, the jobs and the metrics see it (the event log by default)."""

    def __init__(self, redis: Redis, queue: Queue, stream: Stream | None = None):
        self.redis = redis
        self.queue = queue
        self.stream = stream or EVENTS

    @property
    def drainers(self) -> int:
        return max(1, self.stream.drainers)

    def waiting(self) -> int:
        """Entries not yet handled (unread or unacknowledged)."""
        return int(self.redis.xlen(self.stream.key))  # type: ignore[arg-type]

    def dead(self) -> int:
        return int(self.redis.xlen(self.stream.dead))  # type: ignore[arg-type]

    def queue_drain(self, slot: int = 0, later: float = 0.0) -> None:
        """Queue the drain of ``slot`` (its mark is set), ``later`` seconds from now if not
        at once. Waiting for a worker, a drain keeps trying through an outage for its
        patience; run inline (the embedded default) it tries once."""
        patience = (self.stream.patience or PATIENCE_SECONDS) if self.queue.is_async else 0.0
        options: dict[str, Any] = {
            "description": f"drain {self.stream.what} (slot {slot})",
            "result_ttl": 60,
            "failure_ttl": 7 * 86400,
        }
        job = self.stream.job
        if later:
            self.queue.enqueue_in(timedelta(seconds=later), job, slot, patience, **options)
        else:
            self.queue.enqueue(job, slot, patience, **options)

    def wake(self, slot: int = 0) -> bool:
        """Arm ``slot`` and queue its drain, unless one is armed already; True if queued."""
        armed = self.stream.armed.format(slot)
        if not self.redis.set(armed, b"1", nx=True, ex=ARMED_SECONDS):
            return False
        self.queue_drain(slot)
        return True

    def wake_if_waiting(self) -> bool:
        """The maintenance pass: wake slot 0 if entries wait with no drain armed."""
        return self.waiting() > 0 and self.wake(0)

    def append_for_tests(self, batch: dict) -> None:
        """Append one entry outside a hop (tests and the benchmark): the hop's own path is the
        commit script in gateway/sessions.py."""
        self.redis.xadd(self.stream.key, {FIELD: encode(batch)})


def drain(slot: int = 0, patience: float = PATIENCE_SECONDS) -> dict:
    """RQ job: write the waiting entries to the database, batch by batch, until none is left or
    ``patience`` runs out (then a successor goes on)."""
    from .services import current

    services = current()

    def write(entries: Sequence[Entry]) -> dict:
        return _write(services, entries)

    consumer = services.events.stream.consumer.format(slot)
    return Drainer(services.events, consumer, write).run(slot, patience).__dict__


class Drainer:
    """Drains one slot of ``events`` through ``write`` (which handles a batch of entries, or
    raises); ``refill`` runs before each read (the outbox moves due retries back with it), and
    ``finished`` once nothing is left."""

    def __init__(
        self,
        events: EventLog,
        consumer: str,
        write: Callable[[Sequence[Entry]], dict],
        refill: Callable[[], object] = lambda: None,
        finished: Callable[[], object] = lambda: None,
    ):
        self.events = events
        self.stream = events.stream
        self.redis = events.redis
        self.consumer = consumer
        self.write = write
        self.refill = refill
        self.finished = finished
        self.armed = self.stream.armed.format(0)

    def run(self, slot: int, patience: float) -> Drained:
        done = Drained()
        deadline = time.monotonic() + patience
        armed = self.armed = self.stream.armed.format(slot)
        self._ensure_group()
        while True:
            self.redis.set(armed, b"1", ex=ARMED_SECONDS)
            entries = self._next()
            if not entries:
                # Clear the mark, then look once more: an entry appended after the read above
                # either sees the mark gone (its hop queues a drain) or is read here.
                self.redis.delete(armed)
                entries = self._next()
                if not entries:
                    self.finished()
                    return done
                self.redis.set(armed, b"1", ex=ARMED_SECONDS)
            if len(entries) >= self.stream.batch and slot + 1 < self.events.drainers:
                self.events.wake(slot + 1)
            if not self._store(entries, done, deadline):
                self._database_away(slot)
                return done
            if time.monotonic() >= deadline:
                break
            if self._lingers(entries, done):
                time.sleep(max(0.0, min(self.stream.linger, deadline - time.monotonic())))
        if self.events.waiting():
            self.events.queue_drain(slot)  # the mark stays: the successor holds it
        else:
            self.redis.delete(armed)
        return done

    def _lingers(self, entries: list[Entry], done: Drained) -> bool:
        """Whether to wait for more before the next read: on a worker (never inline), after a
        partial batch, once entries have kept coming (a second batch): a lone hop's entries are
        stored at once and its drain ends without waiting."""
        return self.events.queue.is_async and done.batches > 1 and len(entries) < self.stream.batch

    def _database_away(self, slot: int) -> None:
        """Patience ran out with the database away: a successor tries again in a moment (the
        mark stays, and expires if no scheduler runs it: the maintenance pass then wakes a
        drain). Inline, nothing waits: the next hop's commit arms a drain again."""
        if self.events.queue.is_async:
            self.events.queue_drain(slot, later=RETRY_SECONDS)
        else:
            self.redis.delete(self.armed)

    # -- reading ----------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream.key, self.stream.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _next(self) -> list[Entry]:
        """This consumer's unacknowledged entries, else others' idle ones, else new ones."""
        self.refill()
        for read in (self._own, self._abandoned, self._new):
            entries = read()
            if entries:
                return entries
        return []

    def _own(self) -> list[Entry]:
        return self._read("0")

    def _new(self) -> list[Entry]:
        return self._read(">")

    def _read(self, start: str) -> list[Entry]:
        try:
            stream = self.stream
            reply = self.redis.xreadgroup(
                stream.group, self.consumer, {stream.key: start}, count=stream.batch
            )
        except ResponseError as exc:  # NOGROUP: Redis lost the stream meanwhile
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group()
            return []
        entries = cast(Any, reply)[0][1] if reply else []
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _abandoned(self) -> list[Entry]:
        stream = self.stream
        reply = self.redis.xautoclaim(
            stream.key,
            stream.group,
            self.consumer,
            min_idle_time=stream.claim_idle_ms,
            count=stream.batch,
        )
        claimed = cast(Any, reply)[1] if reply else []
        return [(entry_id, fields) for entry_id, fields in claimed if fields]

    # -- writing ----------------------------------------------------------------------------
    def _store(self, entries: list[Entry], done: Drained, deadline: float) -> bool:
        """Write and acknowledge ``entries``; False if the database stayed away past the
        deadline (they stay unacknowledged for the next try)."""
        tries = 0
        while True:
            try:
                counts = self.write(entries)
            except Exception as exc:
                if _database_away(exc):
                    done.outages += 1
                    if time.monotonic() >= deadline:
                        log.warning("database unavailable: %d event(s) wait", len(entries))
                        return False
                    time.sleep(BACKOFF_SECONDS[min(tries, len(BACKOFF_SECONDS) - 1)])
                    tries += 1
                    self.redis.set(self.armed, b"1", ex=ARMED_SECONDS)
                    continue
                if len(entries) == 1:
                    self._bury(entries[0], exc)
                    done.dead += 1
                    self._done(entries)
                    return True
                # One bad entry must not hold back the rest: each on its own.
                log.warning(
                    "a batch failed (%s): its entries are written one by one", type(exc).__name__
                )
                return all(self._store([entry], done, deadline) for entry in entries)
            done.add(counts)
            done.batches += 1
            done.entries += len(entries)
            self._done(entries)
            return True

    def _done(self, entries: Sequence[Entry]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream.key, self.stream.group, *ids)
            pipe.xdel(self.stream.key, *ids)
            pipe.execute()

    def _bury(self, entry: Entry, exc: Exception) -> None:
        dead = self.stream.dead
        log.error(
            "an entry of %s could not be handled (%s): kept in %s",
            self.stream.what,
            type(exc).__name__,
            dead,
        )
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead, {FIELD: entry[1].get(FIELD.encode(), b""), "error": type(exc).__name__})
            pipe.expire(dead, DEAD_SECONDS)
            pipe.execute()


def _write(services, entries: Sequence[Entry]) -> dict:
    batches = [json.loads(fields[FIELD.encode()]) for _, fields in entries]
    pseudonyms = sorted({batch["pseudonym"] for batch in batches})
    stopped = services.sessions.forgotten_since(pseudonyms)
    services.vault.admit(batches)  # contact agreements: the hop's token -> the vault's cipher
    with services.db.session() as session:
        counts = write_batches(session, batches, stopped, services.vault.reseal)
    log.info("persisted events", extra={"counts": counts, "entries": len(entries)})
    return counts


def _database_away(exc: BaseException) -> bool:
    """The database refused or dropped the connection: worth trying again, unlike a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


EVENTS = Stream(
    key=STREAM_KEY,
    dead=DEAD_KEY,
    armed=ARMED_KEY,
    group=GROUP,
    consumer=CONSUMER,
    job=drain,
    what="the event log",
    batch=BATCH,
    claim_idle_ms=CLAIM_IDLE_MS,
    drainers=DRAINERS,
    linger=LINGER_SECONDS,
)
