"""Worker profiles under pseudonyms: written by jobs, forgotten on STOP, read back whole only to
rebuild the hops' cache (gateway/directory_cache.py): no hop reads this table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .consents import latest_licence
from .models import Worker, Workplace

BATCH_ROWS = 5000  # rows fetched at a time when every profile is read


Stored = tuple[str, str, str, int | None, str | None]


def every_profile(session: Session) -> Iterator[Stored]:
    """(pseudonym, language, workplace slug, rotation seed, licence version of the newest
    agreement or None) of every enrolled worker, fetched in batches."""
    query = (
        select(
            Worker.pseudonym,
            Worker.language,
            Workplace.slug,
            Worker.seed,
            latest_licence().label("licence"),
        )
        .join(Workplace, Workplace.id == Worker.workplace_id)
        .execution_options(yield_per=BATCH_ROWS)
    )
    for row in session.execute(query):
        yield row.pseudonym, row.language, row.slug, row.seed, row.licence


def forget(session: Session, pseudonym: str, before: datetime) -> None:
    """STOP: the worker's profile goes at once. Their anonymous answers stay (SPEC §4, §6).

    Only a profile as it stood at the STOP (``before``, when it was sent) goes: a STOP job
    retried late, after the worker enrolled again, leaves the new profile alone."""
    session.execute(
        delete(Worker).where(Worker.pseudonym == pseudonym, Worker.updated_at <= before)
    )
