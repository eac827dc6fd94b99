"""Persisting what the engine decided, as the event log's drain (gateway/persistence.py) asks:
many requests' events at once, in a few set-based statements. Safe to run twice (STYLE §7).

An entry holds pseudonyms and answers, never a number in clear (a worker's agreement to be
contacted arrives with the vault's ciphertext of it, gateway/vault.py). Answers are upserted on
(worker, workplace, question, local day): a second run of the same batch writes the same rows,
and a later answer the same day replaces the earlier one, never the other way round, whichever
batch carries it. A profile likewise keeps its newest state: a retried enrolment or language
change never undoes a later one; so does a contact. Rows are deduplicated within a batch (one
statement may not touch a row twice) and sent in key order, so two drains writing at once
cannot deadlock. A consent is a ledger row written once per event (store/consents.py). STOP
and DELETE are applied last, with their tombstones (store/forget.py), and decide what of a
worker may still be written at all.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import consents, forget, migration, vault
from .db import upsert_insert
from .models import Answer, Worker, Workplace

log = logging.getLogger(__name__)


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
PROFILE_CHANGES = ("language", "workplace_id", "key_id", "consented_at", "updated_at", "seed")
CONTACT_EVENTS = ("contact_agreed", "contact_declined")


def write_events(session: Session, batch: dict, stopped_at: datetime | None = None) -> dict:
    """Write one request's events (``write_batches`` of one)."""
    return write_batches(session, [batch], {batch["pseudonym"]: stopped_at} if stopped_at else {})


def write_batches(
    session: Session,
    batches: Iterable[dict],
    stopped: Mapping[str, datetime] | None = None,
    reseal: vault.Reseal | None = None,
) -> dict:
    """Write many requests' events: answers, enrolments, consents, language changes, STOPs and
    DELETEs.

    ``stopped`` maps a pseudonym to when that worker last opted out, if lately (the hops'
    day-long marks in Redis); with the tombstones in the database (store/forget.py) and the
    STOPs in these very batches, it decides what may still be written: nothing that would bring
    back a worker from a request that arrived before their STOP (an enrolment, a consent), and
    nothing at all of a worker from a request that arrived before their DELETE. ``reseal``
    seals a vault contact for a migrating worker's new pseudonym.
    """
    batches = list(batches)
    counts = {"answers": 0, "profiles": 0, "forgotten": 0, "erased": 0, "consents": 0}
    stops = [stop for batch in batches if (stop := _stop_of(batch)) is not None]
    forget.hold(session, erasing=any(stop.erase for stop in stops))
    stopped_at, erased_at = _tombstones(session, batches, stops, stopped or {})
    places = _workplaces(session, batches)

    def erased_since(batch: dict) -> bool:
        erased = erased_at.get(batch["pseudonym"])
        return erased is not None and _received(batch) <= erased

    live = [batch for batch in batches if not erased_since(batch)]
    for batch in live:  # moves across a key rotation first: later events build on them
        for event in batch["events"]:
            if event["kind"] == "migrated":
                migration.move(
                    session,
                    event["from"],
                    batch["pseudonym"],
                    batch["key_id"],
                    int(event["from_key"]),
                    event.get("seed"),
                    _instant(event["at"]),
                    reseal,
                )
    answers: dict[tuple, dict] = {}
    profiles: dict[str, dict] = {}
    agreements: list[dict] = []
    contacts: list[tuple[datetime, dict, dict]] = []
    languages: list[tuple[str, datetime, str]] = []
    for batch in live:
        last_stop = stopped_at.get(batch["pseudonym"])
        stopped_later = (
            last_stop is not None
            and batch.get("received_at") is not None
            and _received(batch) <= last_stop
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
            elif kind == "consented" and not stopped_later:
                agreements.append(_consent_row(batch, event))
            elif kind in CONTACT_EVENTS and not stopped_later:
                contacts.append((_instant(event["at"]), batch, event))
            elif kind == "language_changed":
                stamp = event.get("at") or batch.get("received_at")
                at = _instant(stamp) if stamp else datetime.now(UTC)
                languages.append((batch["pseudonym"], at, event["language"]))
    counts["answers"] = _upsert_answers(session, sorted(answers.items()))
    counts["profiles"] = _upsert_profiles(session, sorted(profiles.items()))
    counts["consents"] = consents.record(session, agreements)
    for pseudonym, at, language in languages:  # rare: one statement each
        session.execute(
            update(Worker)
            .where(Worker.pseudonym == pseudonym, Worker.updated_at <= at)
            .values(language=language, updated_at=at)
        )
    for at, batch, event in sorted(contacts, key=lambda item: item[0]):  # the latest wins
        _contact(session, at, batch, event)
    for stop in stops:  # after the writes: a STOP in this batch forgets what came before it
        forget.apply(session, stop)
        counts["forgotten"] += 1
        counts["erased"] += int(stop.erase)
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


def _stop_of(batch: dict) -> forget.Stop | None:
    """The STOP (or DELETE) a request's events hold: the worker under this pseudonym and each
    earlier one the hop knew them by (``earlier``, [key id, pseudonym] pairs), at the time it
    was received."""
    kinds = {event["kind"] for event in batch["events"]}
    if "opted_out" not in kinds:
        return None
    pairs = [(int(batch["key_id"]), batch["pseudonym"])]
    for event in batch["events"]:
        if event["kind"] == "opted_out":
            pairs.extend((int(key_id), str(p)) for key_id, p in event.get("earlier") or ())
    return forget.Stop(tuple(dict.fromkeys(pairs)), _received(batch), "erased" in kinds)


def _tombstones(
    session: Session,
    batches: list[dict],
    stops: list[forget.Stop],
    stopped: Mapping[str, datetime],
) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """When each worker these batches name last sent STOP and DELETE, from the hops' marks, the
    database's tombstones and the batches themselves (the latest of the three)."""
    stopped_at = dict(stopped)
    erased_at: dict[str, datetime] = {}
    names = {batch["pseudonym"] for batch in batches}
    for pseudonym, mark in forget.marks(session, names).items():
        _later(stopped_at, pseudonym, mark.stopped_at)
        if mark.erased_at is not None:
            _later(erased_at, pseudonym, mark.erased_at)
    for stop in stops:
        for pseudonym in stop.names:
            _later(stopped_at, pseudonym, stop.at)
            if stop.erase:
                _later(erased_at, pseudonym, stop.at)
    return stopped_at, erased_at


def _later(times: dict[str, datetime], key: str, at: datetime) -> None:
    if key not in times or times[key] < at:
        times[key] = at


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
        "seed": event.get("seed"),  # drawn at enrolment (None from a request before seeds were)
    }


def _consent_row(batch: dict, event: dict) -> dict:
    return {
        "pseudonym": batch["pseudonym"],
        "key_id": batch["key_id"],
        "licence": str(event["licence"]),
        "agreed_at": _instant(event["at"]),
        "language": event["language"],
        "channel": event.get("channel") or batch.get("channel", "sms"),
        "event_id": event["event_id"],
    }


def _upsert_answers(session: Session, rows: list[tuple[tuple, dict]]) -> int:
    """One executemany of a statement compiled once (SQLAlchemy's insertmanyvalues sends it as
    multi-row INSERTs, ``ON CONFLICT`` and all)."""
    if rows:
        insert = upsert_insert(session, Answer)
        statement = insert.on_conflict_do_update(
            index_elements=list(ANSWER_KEY),
            set_={k: insert.excluded[k] for k in ANSWER_CHANGES},
            where=Answer.answered_at <= insert.excluded.answered_at,
        )
        session.connection().execute(statement, [row for _, row in rows])
    return len(rows)


def _upsert_profiles(session: Session, rows: list[tuple[str, dict]]) -> int:
    if rows:
        insert = upsert_insert(session, Worker)
        statement = insert.on_conflict_do_update(
            index_elements=["pseudonym"],
            set_={k: insert.excluded[k] for k in PROFILE_CHANGES},
            where=Worker.updated_at <= insert.excluded.updated_at,
        )
        session.connection().execute(statement, [row for _, row in rows])
    return len(rows)
