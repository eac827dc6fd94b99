"""The pseudonym key ring as stored: key material encrypted under the master key, rotated and
destroyed here (SPEC §2, §6; docs/PRIVACY.md).

A rotation makes a new key that takes over ``LEAD_SECONDS`` later, so that every process has
read it by then (their copy of the ring is never older than identity.KEY_CACHE_SECONDS) and they
all change keys at the same instant: no two requests of one worker, one on either side of the
change, can be read under different keys by processes that disagree about which is current.
The key it replaces becomes ``previous`` and retires at that instant; once it has been retired
for the grace period it is destroyed: its material is overwritten with NULL, and everything kept
under its pseudonyms that could help reach a worker goes with it (profiles and consent ledgers
that never moved, the tombstones of STOP and DELETE, the vault's contacts, the notes linking
those who came back to their new pseudonyms, whose latest answers move with them:
store/migration.settle). The other answers stay: nothing can link them to a number any more.

Every change is a conditional UPDATE on the row's status, so two clocks (or a clock and an
administrator) doing the same thing at once do it once: the loser's statement matches no row.
A partial unique index keeps the ring to one current key whatever races.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from . import migration, vault
from .db import as_utc, rows_changed
from .models import Consent, MigratedPseudonym, PseudonymKey, Tombstone, Worker

CURRENT, PREVIOUS, DESTROYED = "current", "previous", "destroyed"
LEAD_SECONDS = 4.0  # from a rotation to the new key taking over (> identity.KEY_CACHE_SECONDS)

# (secret, key id) -> (ciphertext bound to that id, id of the master key it is under)
Encrypt = Callable[[bytes, int], tuple[bytes, str]]


@dataclass(frozen=True)
class Rotated:
    new: int  # the new key's id
    old: int  # the key it replaces
    activates_at: datetime


@dataclass(frozen=True)
class Destroyed:
    key_id: int
    profiles: int  # profiles left under its pseudonyms (workers who did not come back)
    pseudonyms: tuple[str, ...]  # whose Redis entries go too (sessions, cached profiles)
    contacts: int = 0  # contacts in the vault deleted with it


def live_keys(session: Session) -> list[PseudonymKey]:
    """Keys that still exist (current and previous), newest first."""
    query = select(PseudonymKey).where(PseudonymKey.status.in_((CURRENT, PREVIOUS)))
    return list(session.scalars(query.order_by(PseudonymKey.id.desc())))


def every_key(session: Session) -> list[PseudonymKey]:
    """The whole ring, destroyed keys included (``salts status``), oldest first."""
    return list(session.scalars(select(PseudonymKey).order_by(PseudonymKey.id)))


def ensure_current(session: Session, encrypt: Encrypt) -> PseudonymKey:
    """The current key, creating the first one if the ring is empty.

    ``encrypt(secret: bytes, key_id: int) -> (bytes, master key id)`` seals the key material;
    the id is bound into the ciphertext so a row cannot be swapped for another.
    """
    current = session.scalar(select(PseudonymKey).where(PseudonymKey.status == CURRENT))
    if current is not None:
        return current
    now = datetime.now(UTC)
    key = PseudonymKey(status=CURRENT, secret=b"", created_at=now, activates_at=now)
    session.add(key)
    session.flush()
    key.secret, key.master_key_id = encrypt(secrets.token_bytes(32), key.id)
    return key


def rotation_due(session: Session, now: datetime, period_days: int) -> int | None:
    """The current key's id if it has been in force for the rotation period, else None."""
    current = session.scalar(select(PseudonymKey).where(PseudonymKey.status == CURRENT))
    if current is None:
        return None
    started = as_utc(current.activates_at or current.created_at)
    return current.id if now >= started + timedelta(days=period_days) else None


def rotate(
    session: Session, encrypt: Encrypt, now: datetime, replacing: int | None = None
) -> Rotated | None:
    """Retire the current key and make its successor, taking over LEAD_SECONDS from now.
    With ``replacing`` (the key a clock found due), only if that key is still the current one.
    None if another rotation got there first (its key is the current one now). The caller
    commits; the commit is what every process reads the ring from."""
    current = session.scalar(select(PseudonymKey).where(PseudonymKey.status == CURRENT))
    if current is None or replacing not in (None, current.id):
        return None
    takes_over = now + timedelta(seconds=LEAD_SECONDS)
    retired = rows_changed(
        session,
        update(PseudonymKey)
        .where(PseudonymKey.id == current.id, PseudonymKey.status == CURRENT)
        .values(status=PREVIOUS, retired_at=takes_over),
    )
    if retired != 1:
        return None
    key = PseudonymKey(status=CURRENT, secret=b"", created_at=now, activates_at=takes_over)
    session.add(key)
    session.flush()  # the partial unique index refuses a second current key (IntegrityError)
    key.secret, key.master_key_id = encrypt(secrets.token_bytes(32), key.id)
    return Rotated(new=key.id, old=current.id, activates_at=takes_over)


def destroy_due(session: Session, now: datetime, grace_days: int) -> list[Destroyed]:
    """Destroy every previous key retired for the grace period by ``now`` (grace 0: as soon as
    it retires). The caller commits, then clears Redis of what each destruction names."""
    limit = now - timedelta(days=grace_days)
    due = session.scalars(
        select(PseudonymKey.id).where(
            PseudonymKey.status == PREVIOUS, PseudonymKey.retired_at <= limit
        )
    ).all()
    return [done for key_id in due if (done := destroy(session, key_id, now)) is not None]


def destroy(session: Session, key_id: int, now: datetime) -> Destroyed | None:
    """Destroy one previous key now: its material gone, the destruction's time recorded (no
    secret), the profiles, consent ledger rows, tombstones and contacts of its period deleted,
    and its returning workers' latest answers settled under their new pseudonyms. None if it was not
    a previous key (already destroyed by someone else, or still current)."""
    gone = rows_changed(
        session,
        update(PseudonymKey)
        .where(PseudonymKey.id == key_id, PseudonymKey.status == PREVIOUS)
        .values(status=DESTROYED, secret=None, destroyed_at=now),
    )
    if gone != 1:
        return None
    left = session.scalars(select(Worker.pseudonym).where(Worker.key_id == key_id)).all()
    moved = session.scalars(
        select(MigratedPseudonym.pseudonym).where(MigratedPseudonym.key_id == key_id)
    ).all()
    session.execute(delete(Worker).where(Worker.key_id == key_id))
    session.execute(delete(Consent).where(Consent.key_id == key_id))
    session.execute(delete(Tombstone).where(Tombstone.key_id == key_id))
    contacts = vault.destroy_period(session, key_id)
    migration.settle(session, key_id)  # returning workers' latest answers go with them
    return Destroyed(key_id, len(left), tuple(left) + tuple(moved), contacts)
