"""What is stored under the master key, as ``keys rotate-master`` re-encrypts it
(gateway/master_rotation.py): the pseudonym keys' material and the vault's contacts. Each row
names the master key it is under (``master_key_id``; a pseudonym key written before ids were
recorded names none). This module moves ciphertext and ids, never plaintext."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import rows_changed
from .models import Contact, PseudonymKey


@dataclass(frozen=True)
class Table:
    """A table holding ciphertext under the master key."""

    model: Any
    name: str  # as an operator reads it
    ident: Any  # the primary key column
    blob: Any  # the ciphertext column

    def _pending(self, master_key_id: str):
        column = self.model.master_key_id
        return self.blob.is_not(None), (column != master_key_id) | column.is_(None)


KEYS = Table(PseudonymKey, "pseudonym key(s)", PseudonymKey.id, PseudonymKey.secret)
CONTACTS = Table(Contact, "contact(s)", Contact.pseudonym, Contact.ciphertext)
TABLES = (KEYS, CONTACTS)  # keys first: the hops cannot work without them


def pending(session: Session, table: Table, master_key_id: str, limit: int) -> list:
    """Up to ``limit`` rows not yet under the master key ``master_key_id``, in key order (a
    destroyed key's empty material is not), as (ident, ciphertext, master_key_id)."""
    query = (
        select(table.ident, table.blob, table.model.master_key_id)
        .where(*table._pending(master_key_id))
        .order_by(table.ident)
        .limit(limit)
    )
    return list(session.execute(query))


def count_pending(session: Session, table: Table, master_key_id: str) -> dict[str | None, int]:
    """How many rows are under each master key other than ``master_key_id`` (None: not
    recorded)."""
    query = (
        select(table.model.master_key_id, func.count())
        .where(*table._pending(master_key_id))
        .group_by(table.model.master_key_id)
    )
    return {name: count for name, count in session.execute(query)}


def replace(
    session: Session, table: Table, ident: Any, was: bytes, blob: bytes, master_key_id: str
) -> bool:
    """Put ``blob`` (the same plaintext under another master key) in place of ``was``, unless
    the row changed meanwhile (a key destroyed, a contact forgotten or moved, another run got
    there first): whether it was replaced."""
    statement = (
        update(table.model)
        .where(table.ident == ident, table.blob == was)
        .values({table.blob.key: blob, "master_key_id": master_key_id})
    )
    return rows_changed(session, statement) == 1
