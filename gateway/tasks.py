"""RQ job entry points for what the web process decided. Each takes plain data, is importable
by the worker, and is safe to run twice (STYLE §7); the work itself lives in store/."""

from __future__ import annotations

import logging

from rq import Retry

from store.jobs import write_events

from .services import current

log = logging.getLogger(__name__)
PERSIST_RETRY = Retry(max=5, interval=[1, 5, 30, 120, 600])


def persist_events(batch: dict) -> dict:
    """Persist one message's events (the worker pushed the app context)."""
    services = current()
    stopped_at = services.sessions.forgotten_at(batch["pseudonym"])
    with services.db.session() as session:
        counts = write_events(session, batch, stopped_at)
    log.info("persisted events", extra={"counts": counts, "channel": batch.get("channel")})
    return counts
