"""Helpers for the reporting tests (store, aggregator, API, CLI): a frozen clock, answers written
straight into the table so figures are exact, and the published indicator ids."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.services import Services
from store.models import Answer, Workplace

DHAKA = ZoneInfo("Asia/Dhaka")
# 09:00 UTC on Wednesday 25 November 2026 is 15:00 in Dhaka (UTC+6, no daylight saving).
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=DHAKA)
_events = itertools.count(1)


def freeze(monkeypatch, services: Services, when: datetime = NOW) -> None:
    """Make the app's clock read ``when`` for the rest of the test."""
    monkeypatch.setattr(services, "now", lambda: when)


def dhaka(day: int, hour: int = 12, minute: int = 0, month: int = 11) -> datetime:
    """A moment of 2026 in Dhaka local time."""
    return datetime(2026, month, day, hour, minute, tzinfo=DHAKA)


def add_answer(
    services: Services,
    who: str,
    question: str,
    value: str | float,
    at: datetime,
    workplace: str = "dhaka-knit",
    flow: str = "checkin",
    version: str = "1",
) -> None:
    """Store one answer as the persistence job would (the workplace's local day included)."""
    numeric = isinstance(value, int | float)
    with services.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == workplace))
        session.add(
            Answer(
                pseudonym=who.ljust(64, "0"),
                key_id=1,
                workplace_id=place.id,
                flow_id=flow,
                flow_version=version,
                question_id=question,
                value_text=None if numeric else value,
                value_number=value if numeric else None,
                answered_on=at.astimezone(ZoneInfo(place.timezone)).date(),
                answered_at=at.astimezone(UTC),  # as the job stores it (SQLite drops the zone)
                event_id=f"test:{next(_events)}",
                channel="sms",
            )
        )


def add_answers(
    services: Services, question: str, answers: dict[str, list[tuple]], **kwargs
) -> None:
    """``{respondent: [(value, at), ...]}`` for one question."""
    for who, given in answers.items():
        for value, at in given:
            add_answer(services, who, question, value, at, **kwargs)


def indicator_ids(services: Services) -> list[str]:
    """Every published indicator id, ``<flow>.<question>``, in the order the API lists them."""
    flows, _texts = services.registry.current()
    ordered = sorted(flows.flows.values(), key=lambda f: (not f.default, f.id))
    return [f"{flow.id}.{q.id}" for flow in ordered for q in flow.questions if q.indicator]


def by_id(body: dict) -> dict[str, dict]:
    return {item["id"]: item for item in body["indicators"]}
