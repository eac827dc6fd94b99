"""Grace migration in the database: a worker's first request after a key rotation moved them
to the new key's pseudonym (gateway/conversation.Moved); the drain moves what is stored, in two
steps (docs/PRIVACY.md: why).

At the worker's return (``move``):
- the profile moves (a newer one already under the new pseudonym wins), with the daily
  rotation's seed, and the whole consent ledger with it (store/consents.py);
- the old pseudonym is noted with the new one (MigratedPseudonym). While the old key lives the
  figures count the two as one respondent, in every window (aggregator/indicators.py), so a
  return moves no figure, however long ago the window ended. Anyone who could link them then
  holds the old key anyway.
- the contact in the vault, if the worker opted in to one, moves, resealed for the new
  pseudonym (store/vault.py);

When the old key is destroyed (``settle``, from store/keyring.destroy):
- the worker's latest answer to each question moves to the new pseudonym (``carried``); every
  older one stays under the old pseudonym (``superseded``), counted only in windows ending
  before the old key retired;
- the note is deleted. From then on nothing links what stayed behind to the worker, and a
  window that spans the rotation counts the worker once, as it did the moment before.

Both are safe to run twice: a second run finds nothing left to move.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, delete, select, update
from sqlalchemy.orm import Session

from . import consents, vault
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
    reseal: vault.Reseal | None = None,
) -> None:
    """The worker under ``old`` came back as ``new``: their profile and vault contact move
    (``reseal`` seals the contact for the new pseudonym: gateway/vault.ContactVault.reseal),
    and the two are noted."""
    _move_profile(session, old, new, new_key, seed)
    vault.move(session, old, new, new_key, reseal)
    consents.move(session, old, new, new_key)
    if session.get(MigratedPseudonym, old) is None:
        session.add(
            MigratedPseudonym(
                pseudonym=old, key_id=old_key, moved_to=new, moved_to_key=new_key, migrated_at=at
            )
        )
        session.flush()


def settle(session: Session, key_id: int) -> int:
    """Before key ``key_id`` is destroyed: each worker who came back takes their latest answers
    with them, the rest stay behind superseded, and the notes go; how many answers moved."""
    moved = 0
    for note in session.scalars(
        select(MigratedPseudonym).where(MigratedPseudonym.key_id == key_id)
    ).all():
        moved += _move_latest_answers(session, note.pseudonym, note.moved_to, note.moved_to_key)
        session.execute(
            update(Answer)
            .where(Answer.pseudonym == note.pseudonym, Answer.superseded.is_(False))
            .values(superseded=True)
            .execution_options(synchronize_session=False)
        )
    session.execute(delete(MigratedPseudonym).where(MigratedPseudonym.key_id == key_id))
    return moved


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
    latest: dict[tuple, Row] = {}
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
