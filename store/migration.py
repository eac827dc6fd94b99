"""Grace migration in the database: a worker's first request after a key rotation moved them
to the new key's pseudonym (gateway/conversation.Moved); the drain moves what is stored.

- The profile moves (a newer one already under the new pseudonym wins), with the daily
  rotation's seed, and the whole consent ledger with it (store/consents.py).
- The latest answer to each question moves; every older one stays under the old pseudonym,
  marked superseded, and counts only in windows that end before the old key retired
  (aggregator/indicators.py). So a window counts each worker once, under the key in force at
  its end, and once the old key is destroyed nothing links what stayed behind to the worker.
- The old pseudonym is noted (never the new one), so that an answer under it drained late is
  written superseded too. The note goes with the old key.

Safe to run twice: a second run finds nothing left to move under the old pseudonym.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import consents
from .models import Answer, MigratedPseudonym, Worker

PER_QUESTION = ("workplace_id", "flow_id", "question_id")
ONE_A_DAY = (*PER_QUESTION, "answered_on")


def move(
    session: Session,
    old: str,
    new: str,
    new_key: int,
    old_key: int,
    seed: int | None,
    at: datetime,
) -> int:
    """Move one worker from ``old`` to ``new``; how many answers moved."""
    _move_profile(session, old, new, new_key, seed)
    consents.move(session, old, new, new_key)
    moved = _move_latest_answers(session, old, new, new_key)
    session.execute(
        update(Answer)
        .where(Answer.pseudonym == old, Answer.superseded.is_(False))
        .values(superseded=True)
        .execution_options(synchronize_session=False)
    )
    if session.get(MigratedPseudonym, old) is None:
        session.add(MigratedPseudonym(pseudonym=old, key_id=old_key, migrated_at=at))
        session.flush()
    return moved


def supersede_late(session: Session, pseudonyms: Iterable[str]) -> None:
    """Answers just written under pseudonyms whose workers have moved on count as superseded."""
    candidates = sorted(set(pseudonyms))
    if not candidates:
        return
    moved_on = session.scalars(
        select(MigratedPseudonym.pseudonym).where(MigratedPseudonym.pseudonym.in_(candidates))
    ).all()
    if moved_on:
        session.execute(
            update(Answer)
            .where(Answer.pseudonym.in_(moved_on), Answer.superseded.is_(False))
            .values(superseded=True)
            .execution_options(synchronize_session=False)
        )


def _move_profile(session: Session, old: str, new: str, new_key: int, seed: int | None) -> None:
    before = session.get(Worker, old)
    if before is None:
        return
    after = session.get(Worker, new)
    if after is None:
        session.add(
            Worker(
                pseudonym=new,
                key_id=new_key,
                language=before.language,
                workplace_id=before.workplace_id,
                consented_at=before.consented_at,
                updated_at=before.updated_at,
                seed=before.seed if before.seed is not None else seed,
            )
        )
    elif after.seed is None:
        after.seed = before.seed if before.seed is not None else seed
    session.delete(before)
    session.flush()


def _move_latest_answers(session: Session, old: str, new: str, new_key: int) -> int:
    rows = session.execute(
        select(Answer.id, *(getattr(Answer, c) for c in ONE_A_DAY), Answer.answered_at).where(
            Answer.pseudonym == old, Answer.superseded.is_(False)
        )
    ).all()
    latest: dict[tuple, tuple] = {}
    for row in rows:
        question = tuple(getattr(row, c) for c in PER_QUESTION)
        if question not in latest or (latest[question].answered_at, latest[question].id) < (
            row.answered_at,
            row.id,
        ):
            latest[question] = row
    moved = 0
    for row in latest.values():
        taken = session.scalar(  # the worker answered it again that day under the new key
            select(Answer.id).where(
                Answer.pseudonym == new, *(getattr(Answer, c) == getattr(row, c) for c in ONE_A_DAY)
            )
        )
        if taken is None:
            session.execute(
                update(Answer)
                .where(Answer.id == row.id)
                .values(pseudonym=new, key_id=new_key, carried=True)
                .execution_options(synchronize_session=False)
            )
            moved += 1
    return moved
