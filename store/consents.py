"""The consent ledger: what each worker agreed to (licence version, when, in which language, on
which channel), one row per agreement, kept under their pseudonym.

A row is written by the event log's drain from the engine's Consented event (at enrolment, and
again whenever a worker agrees to a newer licence version, WORKERVOICE_LICENCE_VERSION) and never
changed: the ledger is the history. Declining writes nothing. The rows move with the worker at a
grace migration (store/migration.py), go with STOP and DELETE (store/forget.py), and with their
key when it is destroyed (store/keyring.py). The newest row's version goes into the hops'
profile cache when it is rebuilt (store/profiles.every_profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .db import upsert_insert
from .models import Consent, Worker


def record(session: Session, rows: Sequence[dict]) -> int:
    """Add ledger rows (a Consent's columns each); one already there (same event) is left."""
    if not rows:
        return 0
    statement = upsert_insert(session, Consent).on_conflict_do_nothing(index_elements=["event_id"])
    session.connection().execute(statement, list(rows))
    return len(rows)


def forget(session: Session, pseudonyms: Sequence[str], before: datetime) -> None:
    """STOP or DELETE: the agreements given up to ``before`` go (a later one, given after the
    worker joined again, stays: a STOP retried late must not undo it)."""
    session.execute(
        delete(Consent).where(Consent.pseudonym.in_(list(pseudonyms)), Consent.agreed_at <= before)
    )


def move(session: Session, old: str, new: str, new_key: int) -> None:
    """Grace migration: the worker's whole ledger goes to their new pseudonym."""
    session.execute(
        update(Consent)
        .where(Consent.pseudonym == old)
        .values(pseudonym=new, key_id=new_key)
        .execution_options(synchronize_session=False)
    )


def latest_licence():
    """A correlated subquery: the licence version of the worker's newest agreement (None when
    the ledger has none: a worker enrolled before it existed)."""
    return (
        select(Consent.licence)
        .where(Consent.pseudonym == Worker.pseudonym)
        .order_by(Consent.agreed_at.desc(), Consent.id.desc())
        .limit(1)
        .correlate(Worker)
        .scalar_subquery()
    )


def ledger(session: Session, pseudonym: str) -> list[Consent]:
    """The worker's agreements, oldest first."""
    query = select(Consent).where(Consent.pseudonym == pseudonym).order_by(Consent.agreed_at)
    return list(session.scalars(query))
