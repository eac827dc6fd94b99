"""Sessions in Redis with a TTL, keyed by pseudonym; dialog state per provider session; and the
reply cache for provider retries.

A worker's session (where they are in a flow, their profile) outlives any one dialog, so they
can drop on USSD and finish by voice. A dialog's own state (the USSD page cursor and the inputs
already read from its cumulative text, a call's turn counter and silences) lives apart, keyed by
the provider's session id (hashed: the id is the provider's, not ours to keep in clear).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.exceptions import LockError

from .directory_cache import BUILT_KEY, PROFILE_KEY
from .engine.session import Session
from .outbox import OUTBOX_ARMED, OUTBOX_KEY, RETRY_KEY
from .persistence import ARMED_KEY, ARMED_SECONDS, STREAM_KEY

SESSION_KEY = "wv:session:{}"
REPLY_KEY = "wv:reply:{}:{}"
LOCK_KEY = "wv:lock:{}"
FORGOTTEN_KEY = "wv:forgotten:{}"
CODE_TRIES_KEY = "wv:codetries:{}"
CODE_TRIES_PER_DAY = 9  # three enrolment sessions' worth of workplace codes
DIALOG_KEY = "wv:dialog:{}:{}"
LOCK_SECONDS = 10
FORGOTTEN_SECONDS = 24 * 3600  # outlives every retry of a job queued before the opt-out
DIALOG_SECONDS = 2 * 3600  # longer than any USSD session (minutes) or call
LOCK_POLL_SECONDS = (0.005, 0.01, 0.02, 0.05)  # between tries for a worker's busy lock

# The hop's two round trips (SessionStore.open and .commit) and the lock's release. A hop's
# keys are all on one Redis server (a cluster would need them in one hash slot).
_OPEN = """
local cached = redis.call('GET', KEYS[1])
if cached then return {'reply', cached} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
local dialog = false
if ARGV[3] == '1' then dialog = redis.call('GET', KEYS[4]) end
local session, profile, moved = redis.call('GET', KEYS[3]), redis.call('GET', KEYS[5]), 0
if not session and not profile then
  for i = 7, #KEYS, 2 do
    session, profile = redis.call('GET', KEYS[i]), redis.call('GET', KEYS[i + 1])
    if session or profile then moved = (i - 5) / 2; break end
  end
end
return {'open', session, dialog, profile, redis.call('EXISTS', KEYS[6]), moved}
"""
_COMMIT = """
if ARGV[2] == '' then redis.call('DEL', KEYS[2])
else redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
if ARGV[6] ~= '' then redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[9]) end
if ARGV[10] == 'set' then redis.call('SET', KEYS[6], ARGV[11])
elseif ARGV[10] == 'del' then redis.call('DEL', KEYS[6]) end
local gone = tonumber(ARGV[15])
for i = 12 + gone, #KEYS do redis.call('SET', KEYS[i], ARGV[8], 'EX', ARGV[9]) end
if #ARGV > 15 then
  local function theirs(entry)
    for j = 16, #ARGV do
      if string.find(entry, ARGV[j], 1, true) then return true end
    end
    return false
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[9], '-', '+')) do
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'batch' and theirs(fields[f + 1]) then
        redis.call('XDEL', KEYS[9], entry[1])
      end
    end
  end
  for _, member in ipairs(redis.call('ZRANGE', KEYS[11], 0, -1)) do
    if theirs(member) then redis.call('ZREM', KEYS[11], member) end
  end
end
local armed = 0
if ARGV[12] ~= '' then
  redis.call('XADD', KEYS[7], '*', 'batch', ARGV[12])
  if redis.call('SET', KEYS[8], '1', 'NX', 'EX', ARGV[13]) then armed = 1 end
end
if ARGV[14] ~= '' then
  redis.call('XADD', KEYS[9], '*', 'batch', ARGV[14])
  if redis.call('SET', KEYS[10], '1', 'NX', 'EX', ARGV[13]) then armed = armed + 2 end
end
for i = 12, 11 + gone do redis.call('DEL', KEYS[i]) end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return armed
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def digest(*parts: str) -> str:
    """A fixed-size key part for ids we receive (provider session and message ids)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Opened:
    """What the hop's first round trip found: a cached reply (a retry), or the lock with the
    worker's state."""

    reply: str | None
    token: str | None
    session: Session | None = None
    dialog: Dialog | None = None
    profile: bytes | None = None  # the cached profile, raw (gateway/directory_cache.py)
    built: bool = True  # the cache's marker is there (else it is being rebuilt)
    # Found under an earlier key's pseudonym instead (``Earlier``, by position; None: not):
    # the worker's first request since a rotation, whose commit moves them.
    moved: int | None = None


@dataclass(frozen=True)
class Earlier:
    """Where a worker's state was kept under a previous key's pseudonym (grace migration)."""

    key_id: int
    pseudonym: str

    @property
    def keys(self) -> list[str]:
        """What the hop reads there and its commit deletes once moved: session, profile."""
        return [SESSION_KEY.format(self.pseudonym), PROFILE_KEY.format(self.pseudonym)]


@dataclass(frozen=True)
class Armed:
    """Which drains a commit armed: the event log's, the outbox's."""

    events: bool = False
    outbox: bool = False


@dataclass(frozen=True)
class Kept:
    """What the commit does to the worker's cached profile: nothing, set it, or delete it."""

    key: str = ""
    action: str = ""  # "" | "set" | "del"
    value: str = ""


@dataclass(frozen=True)
class Reply:
    """Where a reply is cached: a provider's message id, from one sender (a second sender
    reusing an id is another message, never answered with the first one's reply)."""

    provider: str
    pseudonym: str
    message_id: str

    @property
    def key(self) -> str:
        return REPLY_KEY.format(self.provider, digest(self.pseudonym, self.message_id))


@dataclass(frozen=True)
class Dialog:
    """One provider session's own state (a plain JSON object the channel reads and writes)."""

    provider: str
    session_id: str
    state: dict[str, Any]

    @property
    def key(self) -> str:
        return DIALOG_KEY.format(self.provider, digest(self.session_id))


class SessionStore:
    def __init__(self, redis: Redis, ttl: int, reply_ttl: int):
        self.redis = redis
        self.ttl = ttl
        self.reply_ttl = reply_ttl
        self._open = redis.register_script(_OPEN)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)

    def load(self, pseudonym: str) -> Session | None:
        raw = self.redis.get(SESSION_KEY.format(pseudonym))
        return Session.from_json(raw) if raw else None

    def open(
        self,
        reply_to: Reply,
        dialog: tuple[str, str] | None,
        profile_key: str,
        earlier: Sequence[Earlier] = (),
    ) -> Opened:
        """The hop's first round trip: the cached reply if this request is a retry; else the
        worker's lock taken, with their session, the dialog's state and their cached profile,
        looked for under the ``earlier`` pseudonyms (newest first) when there is neither.
        Waits while another request from the worker holds the lock (LockError after
        LOCK_SECONDS)."""
        token = secrets.token_hex(8)
        provider, session_id = dialog or ("", "")
        dialog_key = Dialog(provider, session_id, {}).key if dialog else SESSION_KEY.format("-")
        keys = [
            reply_to.key,
            LOCK_KEY.format(reply_to.pseudonym),
            SESSION_KEY.format(reply_to.pseudonym),
            dialog_key,
            profile_key,
            BUILT_KEY,
        ]
        for before in earlier:
            keys.extend(before.keys)
        args: list[str | int] = [token, LOCK_SECONDS * 1000, 1 if dialog else 0]
        waited, deadline = 0, time.monotonic() + LOCK_SECONDS
        while True:
            reply = self._open(keys=keys, args=args)
            if reply[0] == b"reply":
                return Opened(reply=_text(reply[1]), token=None)
            if reply[0] == b"open":
                _, session, state, profile, built, moved = reply
                return Opened(
                    reply=None,
                    token=token,
                    session=Session.from_json(session) if session else None,
                    dialog=_dialog(provider, session_id, state) if dialog else None,
                    profile=profile,
                    built=bool(built),
                    moved=int(moved) - 1 if moved else None,
                )
            if time.monotonic() >= deadline:
                raise LockError("another request from this worker held the lock too long")
            time.sleep(LOCK_POLL_SECONDS[min(waited, len(LOCK_POLL_SECONDS) - 1)])
            waited += 1

    def release(self, pseudonym: str, token: str) -> None:
        """Give the lock back without committing (the hop failed)."""
        self._release(keys=[LOCK_KEY.format(pseudonym)], args=[token])

    def commit(
        self,
        pseudonym: str,
        session: Session | None,
        reply_to: Reply,
        reply: str,
        forgotten_at: datetime | None = None,
        dialog: Dialog | None = None,
        token: str = "",
        profile: Kept = Kept(),
        events: str = "",
        outbox: str = "",
        moved_from: Earlier | None = None,
        forget_earlier: Sequence[Earlier] = (),
    ) -> Armed:
        """The hop's last round trip, all at once (one Lua call): the session saved (or deleted
        when over), the reply cached under the provider's message id, the dialog's state saved
        (it expires DIALOG_SECONDS after its last request), on opt-out the day-long 'forgotten'
        mark, the cached profile changed, the events appended to the event log and a reply to
        send by API to the outbox (gateway/outbox.py), each with its drainer slot 0 armed, the
        worker's state under an earlier pseudonym deleted once moved (``moved_from``), and the
        lock given back. Which drains this call armed (the caller queues them).

        A STOP (``forgotten_at``) also deletes the worker's session and cached profile under
        each ``forget_earlier`` pseudonym (the same worker under a previous key) and marks them
        forgotten there too, and removes every reply to them still waiting in the outbox (its
        stream and its retries; a drain that read one already drops it: outbox.Reply), before the
        STOP's own confirmation is queued. That scans the outbox: STOP is rare, and the outbox
        is short when its drains keep up."""
        state = (
            json.dumps(dialog.state, ensure_ascii=False, separators=(",", ":")) if dialog else ""
        )
        keys = [
            LOCK_KEY.format(pseudonym),
            SESSION_KEY.format(pseudonym),
            reply_to.key,
            dialog.key if dialog else SESSION_KEY.format("-"),
            FORGOTTEN_KEY.format(pseudonym),
            profile.key or SESSION_KEY.format("-"),
            STREAM_KEY,
            ARMED_KEY.format(0),
            OUTBOX_KEY,
            OUTBOX_ARMED.format(0),
            RETRY_KEY,
        ]
        gone = list(moved_from.keys) if moved_from is not None else []
        if forgotten_at is not None:
            for before in forget_earlier:
                gone.extend(key for key in before.keys if key not in gone)
        keys.extend(gone)
        purge: list[str] = []
        if forgotten_at is not None:
            keys.extend(FORGOTTEN_KEY.format(before.pseudonym) for before in forget_earlier)
            purge = [json.dumps(p) for p in (pseudonym, *(b.pseudonym for b in forget_earlier))]
        args: list[str | int] = [
            token,
            session.to_json() if session is not None else "",
            self.ttl,
            reply,
            self.reply_ttl,
            state,
            DIALOG_SECONDS,
            forgotten_at.isoformat() if forgotten_at is not None else "",
            FORGOTTEN_SECONDS,
            profile.action,
            profile.value,
            events,
            ARMED_SECONDS,
            outbox,
            len(gone),
            *purge,
        ]
        armed = int(self._commit(keys=keys, args=args))  # type: ignore[arg-type]
        return Armed(events=bool(armed & 1), outbox=bool(armed & 2))

    def forgotten_at(self, pseudonym: str) -> datetime | None:
        return self.forgotten_since([pseudonym]).get(pseudonym)

    def forgotten_since(self, pseudonyms: Sequence[str]) -> dict[str, datetime]:
        """When each of these workers last opted out, for those who did lately (one MGET)."""
        if not pseudonyms:
            return {}
        raws = self.redis.mget([FORGOTTEN_KEY.format(p) for p in pseudonyms])
        return {
            pseudonym: datetime.fromisoformat(_text(raw))
            for pseudonym, raw in zip(pseudonyms, raws, strict=True)  # type: ignore[arg-type]
            if raw
        }

    def allow_code_try(self, pseudonym: str) -> bool:
        """Count one workplace-code try; False once the sender has used today's allowance."""
        key = CODE_TRIES_KEY.format(pseudonym)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 24 * 3600, nx=True)
            tries, _ = pipe.execute()
        return int(tries) <= CODE_TRIES_PER_DAY


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _dialog(provider: str, session_id: str, raw: bytes | str | None) -> Dialog:
    state = None
    if raw:
        try:
            state = json.loads(raw)
        except ValueError:
            state = None
    return Dialog(provider, session_id, state if isinstance(state, dict) else {})
