"""Persisting what the engine decided, as the RQ job (gateway/tasks.py) asks. Safe to run twice
(STYLE §7).

A job's payload holds pseudonyms and answers, never a number. Answers are upserted on
(worker, workplace, question, local day): a second run of the same job writes the same row, and a
later answer the same day replaces the earlier one, never the other way round. A profile likewise
keeps its newest state: a retried enrolment or language change never undoes a later one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import profiles
from .models import Answer, Worker, Workplace

log = logging.getLogger(__name__)


def write_events(session: Session, batch: dict, stopped_at: datetime | None = None) -> dict:
    """Write one message's events: answers, enrolment, language change, opt-out.

    ``stopped_at`` is when the worker last opted out, if lately: an enrolment from a message
    that arrived before it is not written, so a retried job cannot bring the worker back.
    """
    counts = {"answers": 0, "profiles": 0, "forgotten": 0}
    received = batch.get("received_at")
    stopped_later = (
        stopped_at is not None and received is not None and (_instant(received) <= stopped_at)
    )
    for event in batch["events"]:
        kind = event["kind"]
        if kind == "answer_recorded":
            counts["answers"] += _answer(session, batch, event)
        elif kind == "enrolled" and not stopped_later:
            counts["profiles"] += _enrolled(session, batch, event)
        elif kind == "language_changed":
            _language_changed(session, batch, event)
        elif kind == "opted_out":
            sent = _instant(received) if received is not None else datetime.now(UTC)
            profiles.forget(session, batch["pseudonym"], before=sent)
            counts["forgotten"] += 1
    return counts


def _workplace(session: Session, slug: str | None) -> Workplace | None:
    """The workplace by slug; one query per slug per unit of work (a batch names one or two)."""
    if not slug:
        return None
    places = session.info.setdefault("workplaces_by_slug", {})
    if slug not in places:
        places[slug] = session.scalar(select(Workplace).where(Workplace.slug == slug))
    return places[slug]


def _instant(text: str) -> datetime:
    """An event's ISO 8601 time as UTC; a time without an offset is taken as UTC already, not
    as the worker process's local time."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _answer(session: Session, batch: dict, event: dict) -> int:
    workplace = _workplace(session, event.get("workplace"))
    if workplace is None:
        log.warning("answer for an unknown workplace dropped", extra={"event": event["event_id"]})
        return 0
    at = _instant(event["at"])
    value = event["value"]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    row = {
        "pseudonym": batch["pseudonym"],
        "key_id": batch["key_id"],
        "workplace_id": workplace.id,
        "flow_id": event["flow"],
        "flow_version": event["version"],
        "question_id": event["question"],
        "value_text": None if numeric else str(value),
        "value_number": float(value) if numeric else None,
        "answered_on": at.astimezone(ZoneInfo(workplace.timezone)).date(),
        "answered_at": at,
        "event_id": event["event_id"],
        "channel": batch.get("channel", "sms"),
    }
    insert = _insert(session)(Answer).values(**row)
    changing = {
        k: insert.excluded[k]
        for k in (
            "flow_version",
            "value_text",
            "value_number",
            "answered_at",
            "event_id",
            "channel",
            "key_id",
        )
    }
    statement = insert.on_conflict_do_update(
        index_elements=["pseudonym", "workplace_id", "flow_id", "question_id", "answered_on"],
        set_=changing,
        where=Answer.answered_at <= insert.excluded.answered_at,
    )
    session.execute(statement)
    return 1


def _enrolled(session: Session, batch: dict, event: dict) -> int:
    workplace = _workplace(session, event.get("workplace"))
    if workplace is None:
        log.warning("enrolment for an unknown workplace dropped")
        return 0
    at = _instant(event["at"])
    row = {
        "pseudonym": batch["pseudonym"],
        "key_id": batch["key_id"],
        "language": event["language"],
        "workplace_id": workplace.id,
        "consented_at": at,
        "updated_at": at,
    }
    insert = _insert(session)(Worker).values(**row)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["pseudonym"],
            set_={
                k: insert.excluded[k]
                for k in ("language", "workplace_id", "key_id", "consented_at", "updated_at")
            },
            where=Worker.updated_at <= insert.excluded.updated_at,
        )
    )
    return 1


def _language_changed(session: Session, batch: dict, event: dict) -> None:
    """The worker chose another language (LANG). The event carries no time of its own, so the
    message's arrival time orders it against the profile's last change."""
    stamp = event.get("at") or batch.get("received_at")
    at = _instant(stamp) if stamp else datetime.now(UTC)
    session.execute(
        update(Worker)
        .where(Worker.pseudonym == batch["pseudonym"], Worker.updated_at <= at)
        .values(language=event["language"], updated_at=at)
    )
