"""Sessions in Redis with a TTL, keyed by pseudonym; and the reply cache for provider retries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from redis import Redis

from .engine.session import Session

SESSION_KEY = "wv:session:{}"
REPLY_KEY = "wv:reply:{}:{}"
LOCK_KEY = "wv:lock:{}"
FORGOTTEN_KEY = "wv:forgotten:{}"
CODE_TRIES_KEY = "wv:codetries:{}"
CODE_TRIES_PER_DAY = 9  # three enrolment sessions' worth of workplace codes
LOCK_SECONDS = 10
FORGOTTEN_SECONDS = 24 * 3600  # outlives every retry of a job queued before the opt-out


class SessionStore:
    def __init__(self, redis: Redis, ttl: int, reply_ttl: int):
        self.redis = redis
        self.ttl = ttl
        self.reply_ttl = reply_ttl

    def load(self, pseudonym: str) -> Session | None:
        raw = self.redis.get(SESSION_KEY.format(pseudonym))
        return Session.from_json(raw) if raw else None

    def commit(
        self,
        pseudonym: str,
        session: Session | None,
        message: tuple[str, str],
        reply: str,
        forgotten_at: datetime | None = None,
    ) -> None:
        """One Redis transaction: the session saved (or deleted when over), the reply cached
        under the provider's message id, and on opt-out the day-long 'forgotten' mark."""
        provider, message_id = message
        with self.redis.pipeline(transaction=True) as pipe:
            if session is None:
                pipe.delete(SESSION_KEY.format(pseudonym))
            else:
                pipe.set(SESSION_KEY.format(pseudonym), session.to_json(), ex=self.ttl)
            pipe.set(REPLY_KEY.format(provider, message_id), reply, ex=self.reply_ttl)
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

    def cached_reply(self, provider: str, message_id: str) -> str | None:
        raw = self.redis.get(REPLY_KEY.format(provider, message_id))
        return raw.decode() if isinstance(raw, bytes) else raw
