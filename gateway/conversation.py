"""The channel-neutral handler: one provider request in, the reply out.

Adapters parse and authenticate a request, then call ``handle`` with an ``Inbound`` and a
``Turn``: the channel's own reading of the request into an engine input, and its rendering of
the outcome (SMS text, USSD screens, TwiML, AT voice XML). The number is turned into a pseudonym
first and never passed on. A hop is two Redis round trips (gateway/sessions.py): the first
answers a provider's retry from the reply cache, or takes the worker's lock and reads their
session, the dialog's state and their cached profile; the turn picks the input, the workplace
code it may hold is resolved, the engine steps; the second saves the session, the dialog state
and the reply, changes the cached profile, appends the events to keep to the event log
(gateway/persistence.py, drained into the database in batches) and gives the lock back, all in
one Lua call. A hop runs no SQL: profiles, workplace codes, time zones and the key ring come
from gateway/directory_cache.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from .directory_cache import CachedProfile, profile_json
from .engine import runtime
from .engine.definition import FlowSet
from .engine.events import (
    Consented,
    ContactAgreed,
    Enrolled,
    Event,
    LanguageChanged,
    OptedOut,
    Step,
)
from .engine.inputs import HangUp, Input
from .engine.session import Profile, Session
from .engine.texts import Texts
from .identity import Number, Pseudonym, scrub
from .outbox import Reply as OutboxReply
from .persistence import encode
from .services import Services
from .sessions import Armed, Dialog, Earlier, Kept, Opened, Reply, digest
from .timezones import zone_for_country

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    provider: str  # twilio | at
    channel: str  # sms | whatsapp | ussd | voice
    # The sender as the provider gave it, or as the adapter read it; dropped once pseudonymised.
    address: str | Number
    message_id: str  # the provider's id of this request: its retries carry the same
    dialog: str | None = None  # the provider's session id (USSD sessionId, CallSid), if any
    # The sender sealed (gateway/outbound.seal_recipient) when the reply goes out by the
    # provider's API (AT SMS): the hop's commit then puts it in the outbox as well.
    sealed_sender: str | None = None


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
    opened = services.sessions.open(
        reply_to,
        (inbound.provider, inbound.dialog) if inbound.dialog else None,
        services.profiles.key(who.value),
        [Earlier(key_id, pseudonym) for key_id, pseudonym in who.earlier],
    )
    if opened.reply is not None:
        return Handled(opened.reply, None)
    assert opened.token is not None
    try:
        handled, armed = _converse(services, inbound, who, reply_to, turn, opened)
    except BaseException:
        services.sessions.release(who.value, opened.token)
        raise
    if armed.events:  # the first request since the event log went idle queues its drain
        services.events.queue_drain()
    if armed.outbox:  # and the first reply since the outbox went idle, the outbox's
        services.outbox.queue_drain()
    return handled


def _converse(
    services: Services,
    inbound: Inbound,
    who: Pseudonym,
    reply_to: Reply,
    turn: Turn,
    opened: Opened,
) -> tuple[Handled, Armed]:
    flows, texts = services.registry.current()
    stored = opened.session
    moved = Moved.of(who, opened)
    cached = services.profiles.found(opened.profile, opened.built)
    seed = _seed(services, cached)
    blank = Session(profile=Profile(country=who.country))
    dialog = opened.dialog or Dialog(inbound.provider, "", {})
    turned = turn.read(dialog, stored or blank)  # a stored profile never has a question pending
    if turned.input is None:  # paging within a screen already computed: no profile needed
        reply = turned.reply or ""
        # the session as it was: a worker just forgotten (a STOP screen paged) stays forgotten
        services.sessions.commit(
            who.value,
            stored,
            reply_to,
            reply,
            dialog=_kept(inbound, dialog),
            token=opened.token or "",
            profile=moved.profile(services, who, cached, seed),
            events=_events(services, inbound, who, (), services.now(), moved, seed),
            moved_from=moved.earlier,
        )
        return Handled(reply, None), Armed()
    hung_up = isinstance(turned.input, HangUp)
    # A hang-up needs no profile, and never brings back a worker just forgotten or declined.
    session = stored or (blank if hung_up else _fresh_session(who, cached))
    now = services.now()
    ctx = runtime.Context(
        now=now,
        today=now.astimezone(_zone(services, session)).date(),
        seed=who.seed if seed is None else seed,
        texts=texts,
        workplaces=_resolve_code(services, who, flows, session, turned.input),
        scrub=lambda text: scrub(text, who.country),
        channel=inbound.channel,
        unsupported=turn.unsupported,
        licence=services.config.licence_version,
    )
    result = runtime.step(flows, session, turned.input, ctx)
    opted_out = bool(result.of(OptedOut))
    reply = turn.render(result, dialog, texts)
    # The new session, the dialog's state, the cached reply, the profile cache, the events and
    # the reply to send by API are written together, so a retry of this request can never meet
    # the new session without its reply, nor append its events or send its reply twice.
    # A hang-up keeps the dialog's state until it expires: a provider may report the hang-up
    # before the call's last answer, which must still count.
    armed = services.sessions.commit(
        who.value,
        None if hung_up and stored is None else result.session,
        reply_to,
        reply,
        forgotten_at=now if opted_out else None,
        dialog=_kept(inbound, dialog),
        token=opened.token or "",
        profile=_kept_profile(services, who, result, cached, seed, moved),
        events=_events(services, inbound, who, result.events, now, moved, seed),
        outbox=_to_send(inbound, who, reply, now),
        moved_from=moved.earlier,
        forget_earlier=[Earlier(*pair) for pair in who.earlier] if opted_out else (),
    )
    return Handled(reply, result), armed


def _to_send(inbound: Inbound, who: Pseudonym, reply: str, now: datetime) -> str:
    """The outbox's entry for a reply that goes out by the provider's API ('' if none)."""
    if not inbound.sealed_sender or not reply:
        return ""
    sealed = inbound.sealed_sender
    return OutboxReply(inbound.provider, sealed, reply, who=who.value, at=now.isoformat()).encode()


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


def _fresh_session(who: Pseudonym, cached: CachedProfile | None) -> Session:
    """A new session: the cached profile if the worker is enrolled, else a blank one."""
    if cached is None:
        return Session(profile=Profile(country=who.country))
    return Session(
        profile=Profile(
            language=cached.language,
            workplace=cached.workplace,
            country=who.country,
            enrolled=True,
            licence=cached.licence,
        )
    )


def _zone(services: Services, session: Session) -> ZoneInfo:
    """The worker's day is their workplace's; before enrolment, their number's country's."""
    slug = session.profile.workplace
    name = services.directory.zone(slug) if slug else None
    return ZoneInfo(name or zone_for_country(session.profile.country))


def _seed(services: Services, cached: CachedProfile | None) -> int | None:
    """The daily rotation's seed (None: the pseudonym's own, for a worker enrolled before seeds
    were drawn). A worker's seed is drawn at random as they enrol, kept with their profile and
    moved with it across a key rotation: it says nothing of any pseudonym, so it links nothing
    once the old key is destroyed (docs/PRIVACY.md). A request with no profile draws one; it is
    kept only if the worker enrols in it."""
    if cached is None:
        return services.draw_seed()
    return cached.seed


def _kept_profile(
    services: Services,
    who: Pseudonym,
    result: Step,
    cached: CachedProfile | None,
    seed: int | None,
    moved: Moved,
) -> Kept:
    """The profile this step changed, cached for the worker's next sessions (no hop reads the
    database), in the same commit as its events, with the licence version they agreed to; a
    STOP's goes at once (the drain deletes the stored one). A worker moving to a new key's
    pseudonym has theirs written there."""
    key = services.profiles.key(who.value)
    if result.of(OptedOut):
        return Kept(key, "del")
    kinds = Enrolled | LanguageChanged | Consented
    changed = any(isinstance(event, kinds) for event in result.events)
    if changed and result.session is not None:
        profile = result.session.profile
        if profile.enrolled and profile.language and profile.workplace:
            value = profile_json(profile.language, profile.workplace, seed, profile.licence)
            return Kept(key, "set", value)
    return moved.profile(services, who, cached, seed)


def _events(
    services: Services,
    inbound: Inbound,
    who: Pseudonym,
    events: tuple[Event, ...],
    now: datetime,
    moved: Moved,
    seed: int | None = None,
) -> str:
    """The events to keep, as the event log's entry ('' if none). A move to a new key's
    pseudonym goes first, so the drain moves the stored profile and answers before it writes
    what this request changed. An agreement to be contacted carries the number sealed to
    expire (gateway/vault.py), the only way a number enters the event log."""
    request = digest(inbound.provider, who.value, inbound.message_id)
    kept = [] if moved.earlier is None else [moved.event(now, seed)]
    for index, event in enumerate(events):
        if not event.persist:
            continue
        data = event.to_dict()
        if isinstance(event, ContactAgreed):
            data["sealed"] = services.vault.seal_intake(inbound.address)
        # Fixed size whatever the provider's id: "<provider>:<40 hex>:<n>" fits its column.
        data["event_id"] = f"{inbound.provider}:{request}:{index}"
        if isinstance(event, Enrolled) and seed is not None:  # the drain stores it (store/jobs)
            data["seed"] = seed
        if isinstance(event, OptedOut):  # STOP and DELETE reach the worker's earlier pseudonyms
            data["earlier"] = [[key_id, pseudonym] for key_id, pseudonym in who.earlier]
        kept.append(data)
    if not kept:
        return ""
    return encode(
        {
            "pseudonym": who.value,
            "key_id": who.key_id,
            "channel": inbound.channel,
            "received_at": now.isoformat(),
            "events": kept,
        }
    )


@dataclass(frozen=True)
class Moved:
    """A worker's first request since a key rotation, whose state the hop found under the
    previous key's pseudonym (``earlier``; None for everyone else): its commit moves the
    session and cached profile to the new pseudonym and deletes them there, and its event tells
    the drain to move the stored profile and the latest answers (docs/PRIVACY.md)."""

    earlier: Earlier | None = None

    @classmethod
    def of(cls, who: Pseudonym, opened: Opened) -> Moved:
        if opened.moved is None or opened.moved >= len(who.earlier):
            return cls()
        key_id, pseudonym = who.earlier[opened.moved]
        return cls(Earlier(key_id, pseudonym))

    def profile(
        self, services: Services, who: Pseudonym, cached: CachedProfile | None, seed: int | None
    ) -> Kept:
        """The cached profile written under the new pseudonym, as found ('' if no move)."""
        if self.earlier is None or cached is None:
            return Kept()
        value = profile_json(cached.language, cached.workplace, seed, cached.licence)
        return Kept(services.profiles.key(who.value), "set", value)

    def event(self, now: datetime, seed: int | None) -> dict:
        """The event log's record of the move (read by store/jobs.py)."""
        assert self.earlier is not None
        return {
            "kind": "migrated",
            "from": self.earlier.pseudonym,
            "from_key": self.earlier.key_id,
            "seed": seed,
            "at": now.isoformat(),
            "event_id": "",
        }
