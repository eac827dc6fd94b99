"""The baseline job of bench/ingest.py: the first slice's persistence, one RQ job per message
(one transaction, one upsert per answer), run by the same workers as the event log's drains."""

from __future__ import annotations

from gateway.services import current
from store.jobs import write_events


def persist_one(batch: dict) -> dict:
    services = current()
    stopped_at = services.sessions.forgotten_at(batch["pseudonym"])
    with services.db.session() as session:
        return write_events(session, batch, stopped_at)
