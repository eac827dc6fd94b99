"""The outbox: SMS replies waiting to go out through a provider's API, sent in batches.

A hop that answers by API (Africa's Talking SMS ignores the webhook's response body) seals the
recipient (AES-GCM, purpose ``job-recipient``, one hour: gateway/outbound.reply_by_api) and
appends ``(provider, sealed,
text)`` to the Redis stream ``OUTBOX_KEY`` in one round trip; the first reply after the outbox
went idle queues a ``send_waiting`` job on the ``outbound`` queue. That job is a drain of the
stream like the event log's (gateway/persistence.py): it reads up to ``BATCH`` replies at a
time and sends them ``SENDERS`` at once (one worker's replies one after another, in order), so
a slow provider costs waiting, not a worker per message, and one RQ job sends thousands of
replies.

Each reply's fate: sent; dropped when the seal no longer opens (expired, tampered) or the
provider refused for good (an invalid or blacklisted number, do-not-disturb); or, on any other
failure, put back for another try after ``RETRY_SECONDS[attempt]`` (2 s, 10 s, 1 min, 5 min),
in the sorted set ``RETRY_KEY``, and given up after the last. Due retries go back to the
stream when a drain runs; a drain that leaves retries behind queues one for the first of them,
and the outbound worker's maintenance pass wakes one for any that are due. The embedded
default (no worker, no scheduler) tries each reply once.

Nothing here holds a number in clear: the stream, the retries and the log lines carry the seal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from rq import Queue

from .outbound import RECIPIENT_PURPOSE, SendError, SendRefused, SmsSender, sender_for
from .persistence import ARMED_SECONDS, FIELD, PATIENCE_SECONDS, Drainer, Entry, EventLog, Stream

log = logging.getLogger(__name__)

OUTBOX_KEY = "wv:outbox"
OUTBOX_ARMED = "wv:outbox:armed:{}"
RETRY_KEY = "wv:outbox:retry"  # sorted set: a reply to try again, scored by when
WAKE_KEY = "wv:outbox:wake"  # when the next drain for a retry is queued for
BATCH = 100
SENDERS = 8  # replies in flight at once, per worker process
RETRY_SECONDS = (2, 10, 60, 300)  # after the 1st, 2nd, 3rd and 4th failure; then given up
CLAIM_IDLE_MS = 60_000  # longer than any one send (the SDK gives up on a provider in ~10 s)
MOVE_AT_ONCE = 500  # due retries moved back to the stream per refill
# A drain hands over to a successor after this long: the worker serving the outbox serves the
# callbacks too, and takes one of theirs (its first queue) between two drains.
DRAIN_SECONDS = 5.0

# Move due retries (score <= now) back to the stream, at most ARGV[2]; how many were moved.
_REFILL = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, reply in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'batch', reply)
  redis.call('ZREM', KEYS[1], reply)
end
return #due
"""


@dataclass(frozen=True)
class Reply:
    provider: str
    sealed: str
    text: str
    attempt: int = 0  # failures so far
    # The worker's pseudonym (never the number) and when the hop queued the reply (ISO 8601): a
    # STOP or DELETE removes their replies still waiting, in the stream or among the retries,
    # at once (gateway/sessions.py), and a drain that read one before drops it unsent.
    who: str = ""
    at: str = ""

    def encode(self) -> str:
        data = [self.provider, self.sealed, self.text, self.attempt, self.who, self.at]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def decode(cls, raw: bytes | str) -> Reply:
        provider, sealed, text, attempt, *rest = json.loads(raw)  # older entries: no who, at
        who, at = (*(str(part) for part in rest), "", "")[:2]
        return cls(str(provider), str(sealed), str(text), int(attempt), who, at)

    def left_before(self, forgotten: dict[str, datetime]) -> bool:
        """Whether the worker sent STOP (or DELETE) after this reply was queued: it is not
        sent. Their STOP's own confirmation, queued in the same commit, goes out."""
        stop = forgotten.get(self.who) if self.who and self.at else None
        return stop is not None and datetime.fromisoformat(self.at) < stop


class Outbox(EventLog):
    """The outbox as the hops, the drains and the maintenance pass see it."""

    def __init__(self, redis: Redis, queue: Queue):
        super().__init__(redis, queue, OUTBOX)
        self._refill = redis.register_script(_REFILL)

    def add(self, provider: str, sealed: str, text: str, who: str = "") -> None:
        """Append a reply (its recipient sealed, ``who`` their pseudonym), waking a drain if none
        is armed: one round trip (the drain's queueing is a second only for the first reply of
        a burst)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(OUTBOX_KEY, {FIELD: Reply(provider, sealed, text, who=who).encode()})
            pipe.set(self.stream.armed.format(0), b"1", nx=True, ex=ARMED_SECONDS)
            _, armed = pipe.execute()
        if armed:
            self.queue_drain(0)

    def retrying(self) -> int:
        return int(self.redis.zcard(RETRY_KEY))  # type: ignore[arg-type]

    def refill(self) -> int:
        """Due retries back into the stream; how many."""
        moved = self._refill(keys=[RETRY_KEY, OUTBOX_KEY], args=[time.time(), MOVE_AT_ONCE])
        return int(moved)  # type: ignore[arg-type]

    def retry_later(self, reply: Reply) -> None:
        again = dataclasses.replace(reply, attempt=reply.attempt + 1)
        self.redis.zadd(RETRY_KEY, {again.encode(): time.time() + RETRY_SECONDS[reply.attempt]})

    def wake_for_retries(self) -> None:
        """Nothing left to send now: queue a drain for the first retry left, unless one is
        queued for it already (a drain queued twice finds nothing the second time)."""
        first = self.redis.zrange(RETRY_KEY, 0, 0, withscores=True)
        if not first or not self.queue.is_async:
            return
        due = float(first[0][1])  # type: ignore[index]
        planned = self.redis.get(WAKE_KEY)
        if planned is not None and float(planned) <= due:
            return
        delay = max(0.5, due - time.time())
        self.redis.set(WAKE_KEY, str(due), ex=int(delay) + 60)
        self.queue_drain(0, later=delay)

    def wake_if_waiting(self) -> bool:
        """The maintenance pass: wake a drain for replies waiting or retries due."""
        due = self.redis.zcount(RETRY_KEY, "-inf", time.time())
        return (self.waiting() > 0 or int(due) > 0) and self.wake(0)  # type: ignore[arg-type]


def send_waiting(slot: int = 0, patience: float = PATIENCE_SECONDS) -> dict:
    """RQ job: send the waiting replies, batch by batch, until none is left or ``patience``
    runs out (then a successor goes on).

    Each drain reads as a consumer of its own, not as its slot's (as the event log's do): two
    drains of one slot at once (a hop's and a scheduled one, on two outbound workers) must not
    both send what one of them left unacknowledged. A killed drain's replies are taken over by
    the next drain after CLAIM_IDLE_MS; a drain that ends cleanly leaves nothing pending and is
    removed from the group."""
    from .services import current

    services = current()
    outbox: Outbox = services.outbox
    consumer = f"{OUTBOX.consumer.format(slot)}-{secrets.token_hex(4)}"
    drainer = Drainer(
        outbox,
        consumer,
        lambda entries: _send(services, outbox, entries),
        refill=outbox.refill,
        finished=outbox.wake_for_retries,
    )
    done = drainer.run(slot, patience)
    services.redis.xgroup_delconsumer(OUTBOX_KEY, OUTBOX.group, consumer)
    return done.__dict__


def _send(services, outbox: Outbox, entries: Sequence[Entry]) -> dict:
    # Imported here: prometheus-client must not be imported before a gunicorn master sets
    # PROMETHEUS_MULTIPROC_DIR (gateway/gunicorn_conf.py, in a package importing this module).
    from . import metrics

    replies = [Reply.decode(fields[FIELD.encode()]) for _, fields in entries]
    senders = {p: sender_for(p, services.config) for p in {r.provider for r in replies}}
    outcome_of: dict[int, str] = {}
    # Replies read before their worker's STOP removed them from the stream are not sent either.
    forgotten = services.sessions.forgotten_since(sorted({r.who for r in replies if r.who}))
    # One worker's replies go out one after the other, in the order they came: only different
    # workers' replies are in flight at once.
    in_turn: dict[str, list[tuple[int, str]]] = {}
    for index, reply in enumerate(replies):
        if reply.left_before(forgotten):
            log.info("reply not sent: its worker has left since")
            outcome_of[index] = "dropped"
            continue
        number = _opened(services, reply)
        if number is None:
            outcome_of[index] = "dropped"
        else:
            in_turn.setdefault(number, []).append((index, number))

    def send_in_turn(turn: list[tuple[int, str]]) -> None:
        for index, number in turn:
            reply = replies[index]
            outcome_of[index] = _send_one(senders[reply.provider], reply, number)

    list(_pool().map(send_in_turn, in_turn.values()))
    outcomes = [outcome_of[index] for index in range(len(replies))]
    for reply, outcome in zip(replies, outcomes, strict=True):
        if outcome == "failed":
            if reply.attempt < len(RETRY_SECONDS) and outbox.queue.is_async:
                outbox.retry_later(reply)
                outcome = "retried"
            else:
                log.warning("reply not sent: given up after %d tries", reply.attempt + 1)
                outcome = "given_up"
        metrics.SENDS.labels(reply.provider, outcome).inc()
    return {outcome: outcomes.count(outcome) for outcome in set(outcomes)}


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's senders: kept from one batch to the next, and with them each thread's
    kept-alive connections (gateway/outbound.py)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(SENDERS, thread_name_prefix="outbox")
    return _POOL


def _opened(services, reply: Reply) -> str | None:
    """The reply's recipient, or None if the seal no longer opens (expired, tampered)."""
    from .crypto import CryptoError

    try:
        return services.crypto.unseal(reply.sealed, RECIPIENT_PURPOSE)
    except CryptoError as exc:
        log.warning("reply not sent: %s", exc)
        return None


def _send_one(sender: SmsSender, reply: Reply, number: str) -> str:
    """``sent``, ``dropped`` (the provider refused for good) or ``failed`` (worth another try).
    Never raises: a failure is named, never quoted."""
    try:
        message_id = sender.send(number, reply.text)
    except SendRefused as exc:
        log.warning("reply refused for good: %s", exc)
        return "dropped"
    except Exception as exc:  # SendError, or anything else: named by its type only
        log.warning("reply not sent, to be tried again: %s", _reason(exc))
        return "failed"
    log.info("reply sent", extra={"provider": reply.provider, "message_id": message_id})
    return "sent"


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SendError) else type(exc).__name__


OUTBOX = Stream(
    key=OUTBOX_KEY,
    dead="wv:outbox:dead",
    armed=OUTBOX_ARMED,
    group="send",
    consumer="send-{}",
    job=send_waiting,
    what="the outbox",
    batch=BATCH,
    claim_idle_ms=CLAIM_IDLE_MS,
    drainers=4,  # a full batch wakes another drain, for another outbound worker to take
    patience=DRAIN_SECONDS,
)
