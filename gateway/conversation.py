"""The channel-neutral handler: one inbound message in, the reply out.

Adapters call ``handle`` with an ``Inbound`` and their channel's renderer; the number is turned
into a pseudonym first and never passed on. The engine decides; the session goes back to Redis;
events that must be kept are queued for the worker (gateway/tasks.py) in one job per message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from store import profiles

from . import tasks
from .engine import runtime
from .engine.events import Event, OptedOut
from .engine.session import Profile, Session
from .identity import Pseudonym, scrub
from .services import Services
from .timezones import zone_for_country

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    provider: str  # twilio | at
    channel: str  # sms | ussd | voice
    address: str  # the sender as the provider gave it; dropped once pseudonymised
    text: str
    message_id: str


Render = Callable[[tuple[Event, ...]], str]  # the channel's reply for the engine's events


def handle(services: Services, inbound: Inbound, render: Render) -> str:
    """The reply to one message; a provider retry of it gets the same reply, recorded once."""
    cached = services.sessions.cached_reply(inbound.provider, inbound.message_id)
    if cached is not None:
        return cached
    who = services.identity.pseudonymise(inbound.address)
    with services.sessions.locked(who.value):
        cached = services.sessions.cached_reply(inbound.provider, inbound.message_id)
        if cached is not None:
            return cached
        return _converse(services, inbound, who, render)


def _converse(services: Services, inbound: Inbound, who: Pseudonym, render: Render) -> str:
    flows, texts = services.registry.current()
    session = services.sessions.load(who.value) or _fresh_session(services, who)
    now = services.now()
    ctx = runtime.Context(
        now=now,
        today=now.astimezone(_zone(services, session)).date(),
        seed=who.seed,
        texts=texts,
        find_workplace=lambda code: _find_workplace(services, who, code),
        scrub=lambda text: scrub(text, who.country),
    )
    result = runtime.step(flows, session, inbound.text, ctx)
    opted_out = bool(result.of(OptedOut))
    # Queue the events before moving the session on: if queueing fails nothing has changed,
    # and the provider's retry of this message meets the same session again.
    _enqueue(services, inbound, who, result.events, now)
    reply = render(result.events)
    # The new session and the cached reply are written together, so a retry of this message
    # can never meet the new session without its reply.
    services.sessions.commit(
        who.value,
        result.session,
        (inbound.provider, inbound.message_id),
        reply,
        forgotten_at=now if opted_out else None,
    )
    if opted_out:
        with services.db.session() as db:
            profiles.forget(db, who.value)
    return reply


def _find_workplace(services: Services, who: Pseudonym, code: str) -> str | None:
    """The workplace with this enrolment code, within the sender's daily allowance of tries:
    past it every code is unknown, so no one number can walk through the codes."""
    if not services.sessions.allow_code_try(who.value):
        return None
    return services.find_workplace(code)


def _fresh_session(services: Services, who: Pseudonym) -> Session:
    """A new session: the stored profile if the worker is enrolled, else a blank one."""
    with services.db.session() as db:
        stored = profiles.load(db, who.value)
    if stored is None:
        return Session(profile=Profile(country=who.country))
    return Session(
        profile=Profile(
            language=stored.language, workplace=stored.workplace, country=who.country, enrolled=True
        )
    )


def _zone(services: Services, session: Session) -> ZoneInfo:
    """The worker's day is their workplace's; before enrolment, their number's country's."""
    name = services.workplace_zone(session.profile.workplace) if session.profile.workplace else None
    return ZoneInfo(name or zone_for_country(session.profile.country))


def _enqueue(
    services: Services, inbound: Inbound, who: Pseudonym, events: tuple[Event, ...], now: datetime
) -> None:
    kept = []
    for index, event in enumerate(events):
        if not event.persist:
            continue
        data = event.to_dict()
        data["event_id"] = f"{inbound.provider}:{inbound.message_id}:{index}"
        kept.append(data)
    if not kept:
        return
    batch = {
        "pseudonym": who.value,
        "key_id": who.key_id,
        "channel": inbound.channel,
        "received_at": now.isoformat(),
        "events": kept,
    }
    services.queue.enqueue(
        tasks.persist_events,
        batch,
        job_id=_job_id(inbound),
        description="persist worker events",
        result_ttl=3600,
        failure_ttl=7 * 86400,
        retry=tasks.PERSIST_RETRY,
    )


def _job_id(inbound: Inbound) -> str:
    """One job id per message: a retried message cannot queue its events twice.

    Base32 in lower case (letters and 2-7) rather than hex, so the id rarely holds the long digit
    runs that log redaction would blank out of rq's log lines."""
    digest = hashlib.sha256(f"{inbound.provider}:{inbound.message_id}".encode()).digest()
    return "persist-" + base64.b32encode(digest[:25]).decode().lower()
