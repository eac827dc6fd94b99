"""The contact vault as stored: one row per worker who opted in to be contacted, under their
pseudonym, holding only AES-GCM ciphertext of the number (gateway/vault.py seals and opens it;
SPEC §6). This module never sees a number.

- ``keep`` stores (or replaces) a worker's contact; ``forget`` deletes it (STOP).
- ``move`` carries it to the worker's new pseudonym at a grace migration, resealed for it (the
  pseudonym is bound into the ciphertext, so the old one cannot simply be relabelled).
- ``destroy_period`` deletes every contact of a key's period when the key is destroyed: after
  that nothing stored links the period's pseudonyms to a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from .db import as_utc, rows_changed
from .models import Contact

# (ciphertext, its master key id, old pseudonym, new pseudonym) -> (ciphertext, master key id)
Reseal = Callable[[bytes, str, str, str], tuple[bytes, str]]


def keep(
    session: Session,
    pseudonym: str,
    key_id: int,
    ciphertext: bytes,
    master_key_id: str,
    purposes: Sequence[str],
    at: datetime | None = None,
) -> Contact:
    """Store the worker's contact, replacing the one they had (a new opt-in, a changed number),
    unless that one was kept later than ``at`` (a retried older agreement changes nothing)."""
    at = at or datetime.now(UTC)
    contact = session.get(Contact, pseudonym)
    if contact is None:
        contact = Contact(pseudonym=pseudonym)
        session.add(contact)
    elif as_utc(contact.created_at) > as_utc(at):
        return contact
    contact.key_id = key_id
    contact.ciphertext = ciphertext
    contact.master_key_id = master_key_id
    contact.purposes = sorted(set(purposes))
    contact.created_at = at
    session.flush()
    return contact


def entry(session: Session, pseudonym: str) -> Contact | None:
    return session.get(Contact, pseudonym)


def forget(session: Session, pseudonym: str, before: datetime | None = None) -> int:
    """STOP: the worker's contact goes at once; how many rows went (0 or 1). With ``before``
    (when the STOP was sent), a contact kept after it, from a later opt-in, stays."""
    statement = delete(Contact).where(Contact.pseudonym == pseudonym)
    if before is not None:
        statement = statement.where(Contact.created_at <= before)
    return rows_changed(session, statement)


def move(session: Session, old: str, new: str, new_key_id: int, reseal: Reseal | None) -> bool:
    """Carry the contact kept under ``old`` to ``new`` (the worker's pseudonym under the key
    ``new_key_id``); whether one moved. A contact already under ``new`` was kept after the
    rotation, so it is the newer one and stays; the old one goes either way."""
    before = session.get(Contact, old)
    if before is None:
        return False
    if session.get(Contact, new) is None:
        if reseal is None:
            raise ValueError("a contact cannot move to a new pseudonym without being resealed")
        ciphertext, master_key_id = reseal(before.ciphertext, before.master_key_id, old, new)
        session.add(
            Contact(
                pseudonym=new,
                key_id=new_key_id,
                ciphertext=ciphertext,
                master_key_id=master_key_id,
                purposes=list(before.purposes),
                created_at=before.created_at,
            )
        )
    session.delete(before)
    session.flush()
    return True


def destroy_period(session: Session, key_id: int) -> int:
    """Delete every contact kept under the key ``key_id``'s pseudonyms; how many went."""
    return rows_changed(session, delete(Contact).where(Contact.key_id == key_id))
