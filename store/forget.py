"""STOP and DELETE in the database, as the event log's drain (store/jobs.py) applies them.

STOP forgets a worker under their pseudonym and under each earlier one whose key still lives
(the same worker before a rotation): every ``FORGETTERS`` entry runs for those pseudonyms with
the time the STOP was sent. DELETE does the same, then erases every answer given under them up
to that time. Each leaves a tombstone per pseudonym (``Tombstone``): an entry from a request
received before it, drained however late (a retried job, a batch waiting out an outage, a slot
racing another), writes nothing of that worker again; after DELETE not even an answer.

On PostgreSQL a drain writing answers holds a shared transaction-level advisory lock and one
erasing holds it exclusively (``hold``), so an erasure never misses answers another drain is
committing at the same moment: that drain either commits first (and the erasure deletes them)
or reads the tombstone after it (and skips them). SQLite runs one writer at a time anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, or_, select, text
from sqlalchemy.orm import Session

from . import consents, profiles, vault
from .db import as_utc, upsert_insert
from .models import Answer, MigratedPseudonym, Tombstone

ERASURE_LOCK = 0x5756_4445  # "WVDE": the advisory lock key between answer writes and erasures


def _profiles(session: Session, pseudonyms: Sequence[str], before: datetime) -> None:
    for pseudonym in pseudonyms:
        profiles.forget(session, pseudonym, before=before)


def _contacts(session: Session, pseudonyms: Sequence[str], before: datetime) -> None:
    for pseudonym in pseudonyms:
        vault.forget(session, pseudonym, before=before)


Forgetter = Callable[[Session, Sequence[str], datetime], None]
# What STOP forgets, each given the pseudonyms and the STOP's time (what came later stays).
FORGETTERS: list[Forgetter] = [_profiles, consents.forget, _contacts]


@dataclass(frozen=True)
class Stop:
    """One STOP (``erase``: a confirmed DELETE) of a worker known by ``pseudonyms``: (key id,
    pseudonym) pairs, the current one first."""

    pseudonyms: tuple[tuple[int, str], ...]
    at: datetime
    erase: bool = False

    @property
    def names(self) -> list[str]:
        return [pseudonym for _, pseudonym in self.pseudonyms]


@dataclass(frozen=True)
class Mark:
    stopped_at: datetime
    erased_at: datetime | None = None


def hold(session: Session, erasing: bool) -> None:
    """Take the erasure lock for this transaction (PostgreSQL; see the module's docstring)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if erasing else "pg_advisory_xact_lock_shared"
    session.execute(text(f"SELECT {function}(:key)"), {"key": ERASURE_LOCK})


def marks(session: Session, pseudonyms: Iterable[str]) -> dict[str, Mark]:
    """The tombstones of these pseudonyms, for those that have one (one query)."""
    wanted = sorted(set(pseudonyms))
    if not wanted:
        return {}
    rows = session.execute(
        select(Tombstone.pseudonym, Tombstone.stopped_at, Tombstone.erased_at).where(
            Tombstone.pseudonym.in_(wanted)
        )
    )
    return {
        p: Mark(as_utc(stopped), as_utc(erased) if erased else None) for p, stopped, erased in rows
    }


def apply(session: Session, stop: Stop) -> None:
    """Forget (and for DELETE erase) the worker as of ``stop.at``, and leave their tombstones.
    Safe to run twice, and late: only what was there at ``stop.at`` goes."""
    names = stop.names
    for forgetter in FORGETTERS:
        forgetter(session, names, stop.at)
    if stop.erase:
        session.execute(
            delete(Answer)
            .where(Answer.pseudonym.in_(names), Answer.answered_at <= stop.at)
            .execution_options(synchronize_session=False)
        )
        session.execute(  # nothing is left to count as one across a rotation
            delete(MigratedPseudonym)
            .where(
                or_(MigratedPseudonym.pseudonym.in_(names), MigratedPseudonym.moved_to.in_(names))
            )
            .execution_options(synchronize_session=False)
        )
    _bury(session, stop)


def _bury(session: Session, stop: Stop) -> None:
    """A tombstone per pseudonym; one already there keeps the later of each time."""
    insert = upsert_insert(session, Tombstone)
    erased = stop.at if stop.erase else None
    rows = [
        {"pseudonym": p, "key_id": key_id, "stopped_at": stop.at, "erased_at": erased}
        for key_id, p in sorted(stop.pseudonyms, key=lambda pair: pair[1])
    ]
    changes = {"stopped_at": _later(Tombstone.stopped_at, insert.excluded.stopped_at)}
    if stop.erase:
        changes["erased_at"] = _later(Tombstone.erased_at, insert.excluded.erased_at)
    statement = insert.on_conflict_do_update(index_elements=["pseudonym"], set_=changes)
    session.connection().execute(statement, rows)


def _later(column, excluded):
    """The later of a stored time (maybe NULL) and the new one, in SQL both dialects take."""
    return case((column.is_(None), excluded), (column < excluded, excluded), else_=column)
