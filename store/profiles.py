"""Worker profiles under pseudonyms: read by the web process, written by jobs, forgotten on STOP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Worker, Workplace


@dataclass(frozen=True)
class StoredProfile:
    language: str
    workplace: str  # slug
    timezone: str


def load(session: Session, pseudonym: str) -> StoredProfile | None:
    row = session.execute(
        select(Worker.language, Workplace.slug, Workplace.timezone)
        .join(Workplace, Workplace.id == Worker.workplace_id)
        .where(Worker.pseudonym == pseudonym)
    ).first()
    return StoredProfile(*row) if row else None


def forget(session: Session, pseudonym: str, before: datetime) -> None:
    """STOP: the worker's profile goes at once. Their anonymous answers stay (SPEC §4, §6).

    Only a profile as it stood at the STOP (``before``, when it was sent) goes: a STOP job
    retried late, after the worker enrolled again, leaves the new profile alone."""
    session.execute(
        delete(Worker).where(Worker.pseudonym == pseudonym, Worker.updated_at <= before)
    )


def timezone_of(session: Session, workplace_slug: str) -> str | None:
    return session.scalar(select(Workplace.timezone).where(Workplace.slug == workplace_slug))
