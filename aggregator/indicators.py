"""Per-workplace indicators: every published figure is computed here and nowhere else.

A figure covers each respondent's latest answer in the window; a share counts respondents whose
latest answer is one of the indicator's ``positive`` values, a mean averages latest numbers. Any
figure drawn from fewer than k distinct respondents is published as suppressed (SPEC §6).

A follow-up (a question with ``only_if``) agrees with its parents: it counts only respondents
whose latest answer in the window to every question it depends on still meets the condition, and
is itself valid. A worker who said "yes, 7 days" and later "no" no longer counts among those
reporting long days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, and_, func, not_, select
from sqlalchemy.orm import Session

from gateway.engine.model import NUMBER, Flow, FlowSet, Question
from store.models import Answer, MigratedPseudonym, PseudonymKey, Workplace

WINDOW_DAYS = (7, 30, 90)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    days: int

    def as_dict(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "days": self.days}


def window(cutoff: str, days: int, now: datetime, timezone: str) -> Window:
    """The window of ``days`` ending at the cutoff: the start of today in the workplace's zone
    (``day``), or this moment (``now``)."""
    if cutoff == "day":
        local = now.astimezone(ZoneInfo(timezone))
        end = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        end = now.astimezone(ZoneInfo(timezone))
    return Window(start=end - timedelta(days=days), end=end, days=days)


def latest_answers(session: Session, workplace_id: int, win: Window) -> Sequence[Row]:
    """(flow, question, pseudonym, text, number) of each respondent's latest answer per question.

    A respondent is a worker as the key ring knows them: a worker who came back after a key
    rotation is one respondent under their new pseudonym, while the old key lives through the
    note of their return, and after it through the answers that moved (store/migration.py).
    """
    respondent = func.coalesce(MigratedPseudonym.moved_to, Answer.pseudonym)
    ranked = (
        select(
            Answer.flow_id,
            Answer.question_id,
            respondent.label("pseudonym"),
            Answer.value_text,
            Answer.value_number,
            func.row_number()
            .over(
                partition_by=(Answer.flow_id, Answer.question_id, respondent),
                order_by=(Answer.answered_at.desc(), Answer.id.desc()),
            )
            .label("rank"),
        )
        .join(PseudonymKey, PseudonymKey.id == Answer.key_id)
        .outerjoin(MigratedPseudonym, MigratedPseudonym.pseudonym == Answer.pseudonym)
        .where(
            Answer.workplace_id == workplace_id,
            Answer.answered_at >= win.start.astimezone(UTC),
            Answer.answered_at < win.end.astimezone(UTC),
            *_under_the_key_in_force(win.end.astimezone(UTC)),
        )
        .subquery()
    )
    query = select(
        ranked.c.flow_id,
        ranked.c.question_id,
        ranked.c.pseudonym,
        ranked.c.value_text,
        ranked.c.value_number,
    ).where(ranked.c.rank == 1)
    return session.execute(query).all()


def _under_the_key_in_force(end: datetime) -> tuple:
    """Once a key is destroyed, each worker who had come back counted once, under the
    pseudonym of the key in force at the window's end (store/migration.settle): the answers
    left behind only in windows ending before their key retired, those that moved to the new
    pseudonym only in windows ending after it took over."""
    took_over = func.coalesce(PseudonymKey.activates_at, PseudonymKey.created_at)
    return (
        not_(and_(Answer.superseded.is_(True), PseudonymKey.retired_at < end)),
        not_(and_(Answer.carried.is_(True), took_over >= end)),
    )


def figure(measure: str, positive: tuple[str, ...], rows: list, k: int) -> dict:
    """One indicator's figure from each respondent's latest answer. Only answers of the kind the
    measure reads (a number for a mean, a choice for a share) count, so the respondents k is
    checked against are exactly those the value is drawn from."""
    if measure == "mean":
        values = [r.value_number for r in rows if r.value_number is not None]
    else:
        values = [r.value_text for r in rows if r.value_text is not None]
    respondents = len(values)
    if respondents < k:
        return {"value": None, "respondents": None, "suppressed": True}
    if measure == "mean":
        value = sum(values) / respondents
    else:
        value = sum(1 for v in values if v in positive) / respondents
    return {"value": round(value, 4), "respondents": respondents, "suppressed": False}


def agreeing(flow: Flow, rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each question's latest answers (``{question: {pseudonym: row}}``) less those that disagree
    with their parents. A question's ``only_if`` names earlier questions only, so in file order
    every parent is settled before its follow-ups, and a follow-up of a follow-up needs the whole
    chain to hold, as it does when the question is asked."""
    valid: dict[str, dict[str, Any]] = {}
    for question in flow.questions:
        answers = rows.get(question.id, {})
        if question.only_if:
            answers = {
                who: row
                for who, row in answers.items()
                if all(
                    meets(flow.question(ref), valid.get(ref, {}).get(who), wanted)
                    for ref, wanted in question.only_if.items()
                )
            }
        valid[question.id] = answers
    return valid


def meets(parent: Question, row: Any, wanted: tuple[str, ...]) -> bool:
    """Whether a respondent's latest answer to ``parent`` (None: none in the window) is one of
    the ``only_if`` values: the stored option value, or for a number the same number."""
    if row is None:
        return False
    if parent.type == NUMBER:
        return row.value_number is not None and any(
            _number(value) == row.value_number for value in wanted
        )
    return row.value_text is not None and row.value_text in wanted


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def indicators(
    session: Session,
    workplace: Workplace,
    flows: FlowSet,
    win: Window,
    k: int,
    label: Callable[[str], str] = lambda text: text,
) -> dict:
    """The body of GET /api/v1/workplaces/<id>/indicators for one workplace and window."""
    rows = latest_answers(session, workplace.id, win)
    by_flow: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        by_flow[row.flow_id][row.question_id][row.pseudonym] = row
    published = []
    for flow in sorted(flows.flows.values(), key=lambda f: (not f.default, f.id)):
        valid = agreeing(flow, by_flow.get(flow.id, {}))
        for question in flow.questions:
            if question.indicator is None:
                continue
            ind = question.indicator
            counted = list(valid[question.id].values())
            published.append(
                {
                    "id": f"{flow.id}.{question.id}",
                    "label": label(ind.label),
                    **figure(ind.measure, ind.positive, counted, k),
                }
            )
    everyone = len({row.pseudonym for row in rows})
    return {
        "window": win.as_dict(),
        "respondents": everyone if everyone >= k else None,
        "indicators": published,
    }
