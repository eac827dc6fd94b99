"""The outbox: SMS replies waiting to go out through a provider's API, sent in batches.

A hop that answers by API (Africa's Talking SMS ignores the webhook's response body) seals the
recipient (AES-GCM, purpose ``job-recipient``, one hour: gateway/outbound.reply_by_api) and
appends ``(provider, sealed, text)`` to the Redis stream ``OUTBOX_KEY`` in one round trip; the
first reply after the outbox went idle queues a ``send_waiting`` job on the ``outbound`` queue.
That job is a drain of the stream like the event log's (gateway/persistence.py): it reads up to
``BATCH`` replies at a time and sends those with the same provider and text in one provider
call of up to ``PER_CALL`` recipients (``SmsSender.send_many``: an outcome per recipient),
``SENDERS`` calls in flight at once, so a slow provider costs waiting, not a worker per
message, one HTTP request carries many replies, and one RQ job sends thousands. A batch goes
out in rounds: round k holds every recipient's k-th reply of the batch and starts once round
k-1 has been answered, so one worker's replies go out one after another, in the order they
came, and a number is never twice in one call.
Under steady load (replies kept coming) a drain that read less than a full batch waits
``LINGER_SECONDS`` before it reads again, so that its calls carry many workers' replies.

Each reply's fate comes from its own recipient's outcome: sent; dropped when the seal no longer
opens (expired, tampered), the worker left since it was queued, or the provider refused it for
good (an invalid or blacklisted number, do-not-disturb, a format it cannot take); or, on any
other failure (its own, or its whole call's), put back for another try after
``RETRY_SECONDS[attempt]`` (2 s, 10 s, 1 min, 5 min), in the sorted set ``RETRY_KEY``, and given
up after the last. Due retries go back to the stream when a drain runs; a drain that leaves
retries behind queues one for the first of them, and the outbound worker's maintenance pass
wakes one for any that are due. The embedded default (no worker, no scheduler) tries each reply
once.

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
from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis
from rq import Queue

from .outbound import RECIPIENT_PURPOSE, Fate, Outcome, SmsSender, sender_for
from .persistence import ARMED_SECONDS, FIELD, PATIENCE_SECONDS, Drainer, Entry, EventLog, Stream

log = logging.getLogger(__name__)

OUTBOX_KEY = "wv:outbox"
OUTBOX_ARMED = "wv:outbox:armed:{}"
RETRY_KEY = "wv:outbox:retry"  # sorted set: a reply to try again, scored by when
WAKE_KEY = "wv:outbox:wake"  # when the next drain for a retry is queued for
BATCH = 100
PER_CALL = 100  # recipients of one text in one provider call, at most
SENDERS = 8  # provider calls in flight at once, per worker process
RETRY_SECONDS = (2, 10, 60, 300)  # after the 1st, 2nd, 3rd and 4th failure; then given up
CLAIM_IDLE_MS = 60_000  # longer than any one send (the SDK gives up on a provider in ~10 s)
# After a partial batch a drain waits this long for more replies: one provider call then
# carries many workers' replies of the same text, for a quarter second more on the way.
LINGER_SECONDS = 0.25
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

    def send(call: Call) -> list[str]:
        return _send_call(senders[call.provider], call)

    # A round starts once the one before has finished: one worker's replies go out one after
    # the other, in the order they came; only different workers' replies are in flight at once.
    for calls in _rounds(services, replies, outcome_of):
        for call, outcomes in zip(calls, _pool().map(send, calls), strict=True):
            outcome_of.update(zip(call.replies, outcomes, strict=True))
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


@dataclass(frozen=True)
class Call:
    """One provider call: one text to distinct recipients, for the batch's replies at
    ``replies`` (indexes), ``numbers`` their recipients in the same order (never shown)."""

    provider: str
    text: str
    replies: list[int]
    numbers: list[str] = field(repr=False)


def _rounds(services, replies: Sequence[Reply], outcome_of: dict[int, str]) -> list[list[Call]]:
    """The replies to send as rounds of calls: round k holds every recipient's k-th reply of
    the batch, grouped by (provider, text) into calls of at most PER_CALL recipients, so a
    number comes at most once a round and at most once a call. Replies not to be sent are
    ``dropped`` in ``outcome_of``: a seal that does not open, and a reply read before its
    worker's STOP removed it from the stream."""
    forgotten = services.sessions.forgotten_since(sorted({r.who for r in replies if r.who}))
    turns: dict[str, int] = {}  # number -> its replies so far
    rounds: list[dict[tuple[str, str], list[tuple[int, str]]]] = []
    for index, reply in enumerate(replies):
        if reply.left_before(forgotten):
            log.info("reply not sent: its worker has left since")
            outcome_of[index] = "dropped"
            continue
        number = _opened(services, reply)
        if number is None:
            outcome_of[index] = "dropped"
            continue
        turn = turns[number] = turns.get(number, -1) + 1
        if turn == len(rounds):
            rounds.append({})
        rounds[turn].setdefault((reply.provider, reply.text), []).append((index, number))
    return [
        [
            Call(provider, text, [i for i, _ in chunk], [n for _, n in chunk])
            for (provider, text), group in groups.items()
            for chunk in (group[at : at + PER_CALL] for at in range(0, len(group), PER_CALL))
        ]
        for groups in rounds
    ]


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


def _send_call(sender: SmsSender, call: Call) -> list[str]:
    """Each of the call's replies ``sent``, ``dropped`` (the provider refused for good) or
    ``failed`` (worth another try), in order. Never raises: a failure is named, never quoted."""
    answered, failure = [], ""
    try:
        answered = sender.send_many(call.numbers, call.text)
    except Exception as exc:  # a sender's own failure: named by its type only
        failure = type(exc).__name__
    if failure:  # outside the except: no exception is kept with the outcomes
        answered = [Outcome.failed(failure)] * len(call.numbers)
    return [_logged(call.provider, outcome) for outcome in answered]


def _logged(provider: str, outcome: Outcome) -> str:
    if outcome.fate is Fate.SENT:
        log.info("reply sent", extra={"provider": provider, "message_id": outcome.message_id})
        return "sent"
    if outcome.fate is Fate.REFUSED:
        log.warning("reply refused for good: %s", outcome.reason)
        return "dropped"
    log.warning("reply not sent, to be tried again: %s", outcome.reason)
    return "failed"


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
    linger=LINGER_SECONDS,
)
