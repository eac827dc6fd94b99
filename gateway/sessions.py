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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis

from .engine.session import Session

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


def digest(*parts: str) -> str:
    """A fixed-size key part for ids we receive (provider session and message ids)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


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

    def load(self, pseudonym: str) -> Session | None:
        raw = self.redis.get(SESSION_KEY.format(pseudonym))
        return Session.from_json(raw) if raw else None

    def load_dialog(self, provider: str, session_id: str) -> Dialog:
        """The provider session's state; an empty one for a session not seen before."""
        dialog = Dialog(provider, session_id, {})
        raw = self.redis.get(dialog.key)
        if raw:
            try:
                state = json.loads(raw)
            except ValueError:
                state = None
            if isinstance(state, dict):
                return Dialog(provider, session_id, state)
        return dialog

    def commit(
        self,
        pseudonym: str,
        session: Session | None,
        reply_to: Reply,
        reply: str,
        forgotten_at: datetime | None = None,
        dialog: Dialog | None = None,
    ) -> None:
        """One Redis transaction: the session saved (or deleted when over), the reply cached
        under the provider's message id, the dialog's state saved (it expires DIALOG_SECONDS
        after its last request), and on opt-out the day-long 'forgotten' mark."""
        with self.redis.pipeline(transaction=True) as pipe:
            if session is None:
                pipe.delete(SESSION_KEY.format(pseudonym))
            else:
                pipe.set(SESSION_KEY.format(pseudonym), session.to_json(), ex=self.ttl)
            pipe.set(reply_to.key, reply, ex=self.reply_ttl)
            if dialog is not None:
                state = json.dumps(dialog.state, ensure_ascii=False, separators=(",", ":"))
                pipe.set(dialog.key, state, ex=DIALOG_SECONDS)
            if forgotten_at is not None:
                pipe.set(
                    FORGOTTEN_KEY.format(pseudonym), forgotten_at.isoformat(), ex=FORGOTTEN_SECONDS
                )
            pipe.execute()

    def forgotten_at(self, pseudonym: str) -> datetime | None:
        raw = self.redis.get(FORGOTTEN_KEY.format(pseudonym))
        if not raw:
            return None
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)

    def allow_code_try(self, pseudonym: str) -> bool:
        """Count one workplace-code try; False once the sender has used today's allowance."""
        key = CODE_TRIES_KEY.format(pseudonym)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 24 * 3600, nx=True)
            tries, _ = pipe.execute()
        return int(tries) <= CODE_TRIES_PER_DAY

    @contextmanager
    def locked(self, pseudonym: str) -> Iterator[None]:
        """Serialise messages from one worker, so two arriving together cannot both answer."""
        with self.redis.lock(
            LOCK_KEY.format(pseudonym), timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
        ):
            yield

    def cached_reply(self, reply_to: Reply) -> str | None:
        raw = self.redis.get(reply_to.key)
        return raw.decode() if isinstance(raw, bytes) else raw
