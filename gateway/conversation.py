"""The channel-neutral handler: one provider request in, the reply out.

Adapters parse and authenticate a request, then call ``handle`` with an ``Inbound`` and a
``Turn``: the channel's own reading of the request into an engine input, and its rendering of
the outcome (SMS text, USSD screens, TwiML, AT voice XML). The number is turned into a pseudonym
first and never passed on. Under the worker's lock: the session and the dialog's state are read
from Redis, the turn picks the input, the workplace code it may hold is resolved, the engine
steps, events that must be kept are queued (gateway/tasks.py) in one job per request, and the
session, the dialog state and the reply go back to Redis in one transaction. A hop runs no SQL:
profiles, workplace codes, time zones and the key ring come from gateway/directory_cache.py.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from . import tasks
from .engine import runtime
from .engine.definition import FlowSet
from .engine.events import Enrolled, Event, LanguageChanged, OptedOut, Step
from .engine.inputs import HangUp, Input
from .engine.session import Profile, Session
from .engine.texts import Texts
from .identity import Pseudonym, scrub
from .services import Services
from .sessions import Dialog, Reply, digest
from .timezones import zone_for_country

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    provider: str  # twilio | at
    channel: str  # sms | whatsapp | ussd | voice
    address: str  # the sender as the provider gave it; dropped once pseudonymised
    message_id: str  # the provider's id of this request: its retries carry the same
    dialog: str | None = None  # the provider's session id (USSD sessionId, CallSid), if any


@dataclass(frozen=True)
class Turned:
    """What a turn made of the request: an engine input, or a reply needing no step (a USSD
    page the worker paged to) with the dialog's new state."""

    input: Input | None = None
    reply: str | None = None


class Turn(Protocol):
    """A channel's reading of one request and rendering of its outcome. ``read`` and
    ``render`` may change ``dialog.state`` (pages shown, inputs consumed, silences counted)."""

    @property
    def unsupported(self) -> frozenset[str]:
        """Question types this channel cannot put to a worker (skipped)."""

    def read(self, dialog: Dialog, session: Session) -> Turned: ...

    def render(self, step: Step, dialog: Dialog, texts: Texts) -> str: ...


@dataclass(frozen=True)
class Handled:
    reply: str
    step: Step | None  # None: answered from the reply cache, or a page with no step


def handle(services: Services, inbound: Inbound, turn: Turn) -> Handled:
    """The reply to one request; a provider retry of it gets the same reply, recorded once."""
    who = services.identity.pseudonymise(inbound.address)
    reply_to = Reply(inbound.provider, who.value, inbound.message_id)
    cached = services.sessions.cached_reply(reply_to)
    if cached is not None:
        return Handled(cached, None)
    with services.sessions.locked(who.value):
        cached = services.sessions.cached_reply(reply_to)
        if cached is not None:
            return Handled(cached, None)
        return _converse(services, inbound, who, reply_to, turn)


def _converse(
    services: Services, inbound: Inbound, who: Pseudonym, reply_to: Reply, turn: Turn
) -> Handled:
    flows, texts = services.registry.current()
    stored = services.sessions.load(who.value)
    blank = Session(profile=Profile(country=who.country))
    dialog = (
        services.sessions.load_dialog(inbound.provider, inbound.dialog)
        if inbound.dialog
        else Dialog(inbound.provider, "", {})
    )
    turned = turn.read(dialog, stored or blank)  # a stored profile never has a question pending
    if turned.input is None:  # paging within a screen already computed: no profile needed
        reply = turned.reply or ""
        # the session as it was: a worker just forgotten (a STOP screen paged) stays forgotten
        services.sessions.commit(who.value, stored, reply_to, reply, dialog=_kept(inbound, dialog))
        return Handled(reply, None)
    hung_up = isinstance(turned.input, HangUp)
    # A hang-up needs no profile, and never brings back a worker just forgotten or declined.
    session = stored or (blank if hung_up else _fresh_session(services, who))
    now = services.now()
    ctx = runtime.Context(
        now=now,
        today=now.astimezone(_zone(services, session)).date(),
        seed=who.seed,
        texts=texts,
        workplaces=_resolve_code(services, who, flows, session, turned.input),
        scrub=lambda text: scrub(text, who.country),
        channel=inbound.channel,
        unsupported=turn.unsupported,
    )
    result = runtime.step(flows, session, turned.input, ctx)
    opted_out = bool(result.of(OptedOut))
    # Queue the events before moving the session on: if queueing fails nothing has changed,
    # and the provider's retry of this message meets the same session again.
    _enqueue(services, inbound, who, result.events, now)
    _keep_profile(services, who, result)
    reply = turn.render(result, dialog, texts)
    # The new session, the dialog's state and the cached reply are written together, so a
    # retry of this request can never meet the new session without its reply.
    # A hang-up keeps the dialog's state until it expires: a provider may report the hang-up
    # before the call's last answer, which must still count.
    services.sessions.commit(
        who.value,
        None if hung_up and stored is None else result.session,
        reply_to,
        reply,
        forgotten_at=now if opted_out else None,
        dialog=_kept(inbound, dialog),
    )
    return Handled(reply, result)


def _kept(inbound: Inbound, dialog: Dialog) -> Dialog | None:
    return dialog if inbound.dialog else None


def _resolve_code(
    services: Services, who: Pseudonym, flows: FlowSet, session: Session, given: Input
) -> Mapping[str, str | None]:
    """The workplace code the input holds, looked up within the sender's daily allowance of
    tries: past it every code is unknown, so no one number can walk through the codes."""
    code = runtime.workplace_code(flows, session, given)
    if code is None:
        return {}
    if not services.sessions.allow_code_try(who.value):
        return {code: None}
    return {code: services.directory.slug_for_code(code)}


def _fresh_session(services: Services, who: Pseudonym) -> Session:
    """A new session: the cached profile if the worker is enrolled, else a blank one."""
    stored = services.profiles.load(who.value)
    if stored is None:
        return Session(profile=Profile(country=who.country))
    return Session(
        profile=Profile(
            language=stored.language, workplace=stored.workplace, country=who.country, enrolled=True
        )
    )


def _zone(services: Services, session: Session) -> ZoneInfo:
    """The worker's day is their workplace's; before enrolment, their number's country's."""
    slug = session.profile.workplace
    name = services.directory.zone(slug) if slug else None
    return ZoneInfo(name or zone_for_country(session.profile.country))


def _keep_profile(services: Services, who: Pseudonym, result: Step) -> None:
    """The profile this step changed, cached for the worker's next sessions (no hop reads the
    database): written after its job is queued, so the cache never runs ahead of a change that
    will not be stored; a STOP's goes at once (the job deletes the stored one)."""
    if result.of(OptedOut):
        services.profiles.forget(who.value)
        return
    changed = any(isinstance(event, Enrolled | LanguageChanged) for event in result.events)
    if not changed or result.session is None:
        return
    profile = result.session.profile
    if profile.enrolled and profile.language and profile.workplace:
        services.profiles.save(who.value, profile.language, profile.workplace)


def _enqueue(
    services: Services, inbound: Inbound, who: Pseudonym, events: tuple[Event, ...], now: datetime
) -> None:
    request = digest(inbound.provider, who.value, inbound.message_id)
    kept = []
    for index, event in enumerate(events):
        if not event.persist:
            continue
        data = event.to_dict()
        # Fixed size whatever the provider's id: "<provider>:<40 hex>:<n>" fits its column.
        data["event_id"] = f"{inbound.provider}:{request}:{index}"
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
        job_id=_job_id(request),
        description="persist worker events",
        result_ttl=3600,
        failure_ttl=7 * 86400,
        retry=tasks.PERSIST_RETRY,
    )


def _job_id(request: str) -> str:
    """One job id per request: a retried request cannot queue its events twice.

    Base32 in lower case (letters and 2-7) rather than hex, so the id rarely holds the long digit
    runs that log redaction would blank out of rq's log lines."""
    raw = hashlib.sha256(request.encode()).digest()
    return "persist-" + base64.b32encode(raw[:25]).decode().lower()
