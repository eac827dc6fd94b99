"""The pseudonym key ring as stored: key material encrypted under the master key."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import PseudonymKey

CURRENT, PREVIOUS, DESTROYED = "current", "previous", "destroyed"


def live_keys(session: Session) -> list[PseudonymKey]:
    """Keys that still exist (current and previous), newest first."""
    query = select(PseudonymKey).where(PseudonymKey.status.in_((CURRENT, PREVIOUS)))
    return list(session.scalars(query.order_by(PseudonymKey.id.desc())))


def ensure_current(session: Session, encrypt: Callable[[bytes, int], bytes]) -> PseudonymKey:
    """The current key, creating the first one if the ring is empty.

    ``encrypt(secret: bytes, key_id: int) -> bytes`` seals the key material; the id is bound
    into the ciphertext so a row cannot be swapped for another.
    """
    current = session.scalar(select(PseudonymKey).where(PseudonymKey.status == CURRENT))
    if current is not None:
        return current
    key = PseudonymKey(status=CURRENT, secret=b"", created_at=datetime.now(UTC))
    session.add(key)
    session.flush()
    key.secret = encrypt(secrets.token_bytes(32), key.id)
    return key
