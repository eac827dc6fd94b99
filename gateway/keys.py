"""Pseudonym key rotation and destruction as the clock and ``workervoice salts`` run them
(SPEC §2, §6; store/keyring.py holds the rules, docs/PRIVACY.md the promises).

``maintain`` is the whole job: rotate when the current key has served its period, destroy every
previous key whose grace is over, and make sure Redis holds exactly the database's live ring.
Safe to run in any number of processes at once (the clock may run twice): every change is a
conditional statement that only one of them wins.

A destruction takes the destroyed period's Redis entries with it (cached profiles, sessions,
opt-out marks and code tries under its pseudonyms) before its database commit: if Redis
cannot be reached the destruction waits for the next tick rather than leave them behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis

from store import keyring as stored_keys

from .directory_cache import PROFILE_KEY
from .identity import key_encrypter
from .sessions import CODE_TRIES_KEY, FORGOTTEN_KEY, LOCK_KEY, SESSION_KEY

log = logging.getLogger(__name__)

CLOCK_SECONDS = 15.0  # between the clock's ticks
REDIS_BATCH = 500  # keys deleted per round trip when a period is destroyed
_PER_PSEUDONYM = (PROFILE_KEY, SESSION_KEY, FORGOTTEN_KEY, CODE_TRIES_KEY, LOCK_KEY)


@dataclass(frozen=True)
class Maintained:
    rotated: stored_keys.Rotated | None = None
    destroyed: list[stored_keys.Destroyed] = field(default_factory=list)


class KeyKeeper:
    """Rotation and destruction against one database and Redis (built from Services)."""

    def __init__(self, services):
        self.services = services

    def rotate(self, now: datetime, replacing: int | None = None) -> stored_keys.Rotated | None:
        """A rotation now (``salts rotate``, or the clock when key ``replacing`` is due: only if
        it is still the current key, so two clocks that both found it due rotate once)."""
        with self.services.db.session() as session:
            encrypt = key_encrypter(self.services.crypto)
            rotated = stored_keys.rotate(session, encrypt, now, replacing)
        if rotated is not None:
            log.info(
                "pseudonym key rotated",
                extra={
                    "key": rotated.new,
                    "replaces": rotated.old,
                    "takes_over": rotated.activates_at.isoformat(),
                },
            )
        return rotated

    def destroy_due(self, now: datetime) -> list[stored_keys.Destroyed]:
        """Destroy every previous key whose grace period is over."""
        grace = self.services.config.salt_grace_days
        with self.services.db.session() as session:
            destroyed = stored_keys.destroy_due(session, now, grace)
            forget(self.services.redis, (p for d in destroyed for p in d.pseudonyms))
        for done in destroyed:
            log.info(
                "pseudonym key destroyed",
                extra={
                    "key": done.key_id,
                    "profiles_deleted": done.profiles,
                    "contacts_deleted": done.contacts,
                },
            )
        return destroyed

    def maintain(self, now: datetime) -> Maintained:
        """One tick: a due rotation, due destructions, and the ring in Redis made right."""
        period = self.services.config.salt_period_days
        with self.services.db.session() as session:
            due = stored_keys.rotation_due(session, now, period)
        rotated = self.rotate(now, replacing=due) if due is not None else None
        destroyed = self.destroy_due(now)
        self.services.mirror.publish_keys()  # a commit whose publish failed is put right here
        return Maintained(rotated, destroyed)


def forget(redis: Redis, pseudonyms: Iterable[str]) -> int:
    """Delete every Redis entry kept under these pseudonyms; how many keys went."""
    gone, batch = 0, list[str]()
    for pseudonym in pseudonyms:
        batch.extend(pattern.format(pseudonym) for pattern in _PER_PSEUDONYM)
        if len(batch) >= REDIS_BATCH:
            gone += int(redis.delete(*batch))
            batch = []
    if batch:
        gone += int(redis.delete(*batch))
    return gone


def run_clock(services, *, once: bool = False, sleep: Callable[[float], None] = time.sleep) -> None:
    """The Procfile's clock: ``maintain`` every CLOCK_SECONDS, for ever. An outage of the
    database or Redis is logged and tried again at the next tick."""
    keeper = KeyKeeper(services)
    while True:
        try:
            keeper.maintain(services.now())
        except Exception as exc:  # the clock outlives any one tick's failure
            log.warning("the clock's key maintenance failed (%s): tried again", type(exc).__name__)
        if once:
            return
        sleep(CLOCK_SECONDS)
