"""RQ jobs that persist what the engine decided. Each is safe to run twice (STYLE §7).

A job's payload holds pseudonyms and answers, never a number. Answers are upserted on
(worker, workplace, question, local day): a second run of the same job writes the same row, and a
later answer the same day replaces the earlier one, never the other way round. A profile likewise
keeps its newest state: a retried enrolment or language change never undoes a later one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rq import Retry
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import profiles
from .models import Answer, Worker, Workplace

log = logging.getLogger(__name__)
RETRY = Retry(max=5, interval=[1, 5, 30, 120, 600])


def persist_events(batch: dict) -> dict:
    """Write one message's events: answers, enrolment, language change, opt-out."""
    from gateway.services import current  # the worker pushed the app context

    services = current()
    counts = {"answers": 0, "profiles": 0, "forgotten": 0}
    with services.db.session() as session:
        for event in batch["events"]:
            kind = event["kind"]
            if kind == "answer_recorded":
                counts["answers"] += _answer(session, batch, event)
            elif kind == "enrolled":
                if _forgotten_since(services, batch):
                    continue  # a retried enrolment must not bring back a worker who left
                counts["profiles"] += _enrolled(session, batch, event)
            elif kind == "language_changed":
                _language_changed(session, batch, event)
            elif kind == "opted_out":
                profiles.forget(session, batch["pseudonym"])
                counts["forgotten"] += 1
    log.info("persisted events", extra={"counts": counts, "channel": batch.get("channel")})
    return counts


def _forgotten_since(services, batch: dict) -> bool:
    """The worker sent STOP after this batch's message arrived (SPEC §4: forgotten at once)."""
    stopped = services.sessions.forgotten_at(batch["pseudonym"])
    received = batch.get("received_at")
    return stopped is not None and received is not None and _instant(received) <= stopped


def _workplace(session: Session, slug: str | None) -> Workplace | None:
    if not slug:
        return None
    return session.scalar(select(Workplace).where(Workplace.slug == slug))


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
