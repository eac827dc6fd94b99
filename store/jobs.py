"""Persisting what the engine decided, as the event log's drain (gateway/persistence.py) asks:
many requests' events at once, in a few set-based statements. Safe to run twice (STYLE §7).

An entry holds pseudonyms and answers, never a number in clear (a worker's agreement to be
contacted arrives with the vault's ciphertext of it, gateway/vault.py). Answers are upserted on
(worker, workplace, question, local day): a second run of the same batch writes the same rows,
and a later answer the same day replaces the earlier one, never the other way round, whichever
batch carries it. A profile likewise keeps its newest state: a retried enrolment or language
change never undoes a later one; so does a contact. Rows are deduplicated within a batch (one
statement may not touch a row twice) and sent in key order, so two drains writing at once
cannot deadlock.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import migration, vault
from .models import Answer, Worker, Workplace
from .profiles import forget as profiles_forget

log = logging.getLogger(__name__)


CONTACT_EVENTS = ("contact_agreed", "contact_declined")
ANSWER_KEY = ("pseudonym", "workplace_id", "flow_id", "question_id", "answered_on")
ANSWER_CHANGES = (
    "flow_version",
    "value_text",
    "value_number",
    "answered_at",
    "event_id",
    "channel",
    "key_id",
)
PROFILE_CHANGES = ("language", "workplace_id", "key_id", "consented_at", "updated_at")


def write_events(session: Session, batch: dict, stopped_at: datetime | None = None) -> dict:
    """Write one request's events (``write_batches`` of one)."""
    return write_batches(session, [batch], {batch["pseudonym"]: stopped_at} if stopped_at else {})


def write_batches(
    session: Session,
    batches: Iterable[dict],
    stopped: Mapping[str, datetime] | None = None,
    reseal: vault.Reseal | None = None,
) -> dict:
    """Write many requests' events: answers, enrolments, language changes, opt-outs (which
    delete the profile and the vault's contact).

    ``stopped`` maps a pseudonym to when that worker last opted out, if lately: an enrolment
    from a request that arrived before it is not written, so an entry drained late cannot bring
    the worker back. ``reseal`` seals a vault contact for a migrating worker's new pseudonym.
    """
    batches = list(batches)
    stopped = dict(stopped or {})
    counts = {"answers": 0, "profiles": 0, "forgotten": 0}
    places = _workplaces(session, batches)
    for batch in batches:  # a STOP in this very batch counts as well as one noted in Redis
        for event in batch["events"]:
            if event["kind"] == "opted_out":
                at = _received(batch)
                if batch["pseudonym"] not in stopped or stopped[batch["pseudonym"]] < at:
                    stopped[batch["pseudonym"]] = at
    for batch in batches:  # moves across a key rotation first: later events build on them
        for event in batch["events"]:
            if event["kind"] == "migrated":
                migration.move(
                    session,
                    event["from"],
                    batch["pseudonym"],
                    batch["key_id"],
                    int(event["from_key"]),
                    _instant(event["at"]),
                    reseal,
                )
    answers: dict[tuple, dict] = {}
    profiles: dict[str, dict] = {}
    languages: list[tuple[str, datetime, str]] = []
    forgotten: list[tuple[str, datetime]] = []
    contacts: list[tuple[datetime, dict, dict]] = []
    for batch in batches:
        stop = stopped.get(batch["pseudonym"])
        stopped_later = (
            stop is not None and batch.get("received_at") is not None and (_received(batch) <= stop)
        )
        for event in batch["events"]:
            kind = event["kind"]
            if kind == "answer_recorded":
                row = _answer_row(batch, event, places)
                if row is not None:
                    _keep_latest(answers, tuple(row[k] for k in ANSWER_KEY), row, "answered_at")
            elif kind == "enrolled" and not stopped_later:
                row = _profile_row(batch, event, places)
                if row is not None:
                    _keep_latest(profiles, row["pseudonym"], row, "updated_at")
            elif kind == "language_changed":
                stamp = event.get("at") or batch.get("received_at")
                at = _instant(stamp) if stamp else datetime.now(UTC)
                languages.append((batch["pseudonym"], at, event["language"]))
            elif kind == "opted_out":
                forgotten.append((batch["pseudonym"], _received(batch)))
            elif kind in CONTACT_EVENTS and not stopped_later:
                contacts.append((_instant(event["at"]), batch, event))
    counts["answers"] = _upsert_answers(session, sorted(answers.items()))
    counts["profiles"] = _upsert_profiles(session, sorted(profiles.items()))
    for pseudonym, at, language in languages:  # rare: one statement each
        session.execute(
            update(Worker)
            .where(Worker.pseudonym == pseudonym, Worker.updated_at <= at)
            .values(language=language, updated_at=at)
        )
    for at, batch, event in sorted(contacts, key=lambda item: item[0]):  # the latest wins
        _contact(session, at, batch, event)
    for pseudonym, sent in forgotten:
        profiles_forget(session, pseudonym, before=sent)
        vault.forget(session, pseudonym, before=sent)
        counts["forgotten"] += 1
    return counts


def _contact(session: Session, at: datetime, batch: dict, event: dict) -> None:
    """A worker agreed to be contacted (the vault's ciphertext, made by the drain from the
    hop's sealed number: gateway/vault.ContactVault.admit) or declined (any contact goes)."""
    if event["kind"] == "contact_declined":
        vault.forget(session, batch["pseudonym"], before=at)
    elif event.get("ciphertext"):  # none: the hop's token had expired or held no number
        vault.keep(
            session,
            batch["pseudonym"],
            batch["key_id"],
            base64.b64decode(event["ciphertext"]),
            event["master_key_id"],
            event["purposes"],
            at=at,
        )


def _keep_latest(rows: dict, key, row: dict, stamp: str) -> None:
    """The later of two rows for one key (the later in the log when their times are equal)."""
    if key not in rows or rows[key][stamp] <= row[stamp]:
        rows[key] = row


def _workplaces(session: Session, batches: list[dict]) -> dict[str, tuple[int, ZoneInfo]]:
    """Every workplace the batches name, by slug: (id, time zone), in one query."""
    slugs = {
        event["workplace"]
        for batch in batches
        for event in batch["events"]
        if event.get("workplace")
    }
    if not slugs:
        return {}
    rows = session.execute(
        select(Workplace.slug, Workplace.id, Workplace.timezone).where(Workplace.slug.in_(slugs))
    )
    return {slug: (ident, ZoneInfo(zone)) for slug, ident, zone in rows}


def _instant(text: str) -> datetime:
    """An event's ISO 8601 time as UTC; a time without an offset is taken as UTC already, not
    as the worker process's local time."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _received(batch: dict) -> datetime:
    received = batch.get("received_at")
    return _instant(received) if received is not None else datetime.now(UTC)


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _answer_row(batch: dict, event: dict, places: Mapping[str, tuple[int, ZoneInfo]]):
    place = places.get(event.get("workplace") or "")
    if place is None:
        log.warning("answer for an unknown workplace dropped", extra={"event": event["event_id"]})
        return None
    workplace_id, zone = place
    at = _instant(event["at"])
    value = event["value"]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "pseudonym": batch["pseudonym"],
        "key_id": batch["key_id"],
        "workplace_id": workplace_id,
        "flow_id": event["flow"],
        "flow_version": event["version"],
        "question_id": event["question"],
        "value_text": None if numeric else str(value),
        "value_number": float(value) if numeric else None,
        "answered_on": at.astimezone(zone).date(),
        "answered_at": at,
        "event_id": event["event_id"],
        "channel": batch.get("channel", "sms"),
    }


def _profile_row(batch: dict, event: dict, places: Mapping[str, tuple[int, ZoneInfo]]):
    place = places.get(event.get("workplace") or "")
    if place is None:
        log.warning("enrolment for an unknown workplace dropped")
        return None
    at = _instant(event["at"])
    return {
        "pseudonym": batch["pseudonym"],
        "key_id": batch["key_id"],
        "language": event["language"],
        "workplace_id": place[0],
        "consented_at": at,
        "updated_at": at,
    }


def _upsert_answers(session: Session, rows: list[tuple[tuple, dict]]) -> int:
    """One executemany of a statement compiled once (SQLAlchemy's insertmanyvalues sends it as
    multi-row INSERTs, ``ON CONFLICT`` and all)."""
    if rows:
        insert = _insert(session)(Answer)
        statement = insert.on_conflict_do_update(
            index_elements=list(ANSWER_KEY),
            set_={k: insert.excluded[k] for k in ANSWER_CHANGES},
            where=Answer.answered_at <= insert.excluded.answered_at,
        )
        session.connection().execute(statement, [row for _, row in rows])
    return len(rows)


def _upsert_profiles(session: Session, rows: list[tuple[str, dict]]) -> int:
    if rows:
        insert = _insert(session)(Worker)
        statement = insert.on_conflict_do_update(
            index_elements=["pseudonym"],
            set_={k: insert.excluded[k] for k in PROFILE_CHANGES},
            where=Worker.updated_at <= insert.excluded.updated_at,
        )
        session.connection().execute(statement, [row for _, row in rows])
    return len(rows)
