"""The demo's simulated workers: real conversations, so the demo brand sees real figures at once.

``workervoice demo`` seeds a workplace and a brand, then ``walk`` has a few dozen simulated
workers (a fixed seed; Bangla and English; Twilio SMS, WhatsApp, Africa's Talking USSD and Twilio
Voice) enrol and answer the daily check-in on many of the last 30 days. Each request goes through
the real webhook, adapter, engine and persistence job; only the clock is injected, so the answers
spread over past days and published figures (cutoff ``day``) show at once.

A simulated worker answers whatever the service asks (read from their session, as the engine
left it): the menu position of their language, consent, the workplace code, and for check-in
questions an option drawn with their own leaning, or a number in range.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from flask import Flask
from twilio.request_validator import RequestValidator

from . import queues
from .engine.answers import LANGUAGE_PROMPT, RESUME_PROMPT
from .engine.model import CONSENT, LANGUAGE, NUMBER, WORKPLACE, Question
from .engine.texts import languages_for
from .services import Services

CHANNELS = ("sms", "whatsapp", "ussd", "voice")
MAX_HOPS = 40  # a conversation longer than this is a bug in the walk, not a worker


@dataclass(frozen=True)
class Walked:
    workers: int
    conversations: int
    hops: int


@dataclass
class DemoWorker:
    number: str
    language: str
    channel: str
    leaning: random.Random  # this worker's own way of answering

    def choose(self, question: Question) -> str:
        if question.type == NUMBER:
            low, high = int(question.min or 1), int(question.max or 5)
            return str(self.leaning.randint(low, high))
        weights = [
            1.0 / (n + 1) ** self.leaning.uniform(0.2, 2.0) for n in range(len(question.options))
        ]
        index = self.leaning.choices(range(len(question.options)), weights)[0]
        return str(index + 1)


def walk(
    app: Flask,
    code: str,
    zone: str,
    workers: int = 36,
    days: int = 30,
    seed: int = 2026,
    now: datetime | None = None,
) -> Walked:
    """Walk ``workers`` simulated workers through the last ``days`` days before today in the
    workplace's time zone ``zone``, answering between 10:00 and 20:00 there."""
    services: Services = app.extensions["workervoice"]
    rng = random.Random(seed)
    crowd = [
        DemoWorker(
            number=f"+8801711{900000 + n:06d}",
            language="bn" if n % 3 else "en",
            channel=CHANNELS[n % len(CHANNELS)],
            leaning=random.Random(rng.random()),
        )
        for n in range(workers)
    ]
    local = ZoneInfo(zone)
    today = (now or datetime.now(UTC)).astimezone(local).date()
    conversations = hops = 0
    with _in_process_jobs(services), _quiet(), _clock(services) as set_time:
        for back in range(days, 0, -1):
            for worker in crowd:
                if back != days and rng.random() > 0.6:
                    continue
                day = today - timedelta(days=back)
                start = datetime.combine(day, time(10), tzinfo=local)
                set_time((start + timedelta(minutes=rng.randint(0, 600))).astimezone(UTC))
                hops += _converse(app, services, worker, code)
                conversations += 1
    return Walked(workers, conversations, hops)


@contextmanager
def _clock(services: Services) -> Iterator:
    """Let the walk set the time the services see; the real clock comes back afterwards."""
    real = services.clock
    moment = [real()]
    services.clock = lambda: moment[0]

    def set_time(at: datetime) -> None:
        moment[0] = at

    try:
        yield set_time
    finally:
        services.clock = real


@contextmanager
def _quiet() -> Iterator[None]:
    """One line per drain of the event log would bury the demo's summary: info logs wait
    meanwhile."""
    logger = logging.getLogger("gateway.persistence")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _in_process_jobs(services: Services) -> Iterator[None]:
    """Run the jobs as they are queued (the event log's drains among them), even beside a real
    Redis and worker."""
    real = {name: services.__dict__.get(name) for name in ("queues", "events", "outbox")}
    services.__dict__["queues"] = queues.make(services.redis, is_async=False)
    services.__dict__.pop("events", None)
    services.__dict__.pop("outbox", None)
    try:
        yield
    finally:
        for name, value in real.items():
            if value is None:
                services.__dict__.pop(name, None)
            else:
                services.__dict__[name] = value


def _converse(app: Flask, services: Services, worker: DemoWorker, code: str) -> int:
    """One conversation on the worker's channel, until the service stops asking."""
    phones: dict[str, type[_Sms | _Ussd | _Voice]] = {
        "sms": _Sms,
        "whatsapp": _Sms,
        "ussd": _Ussd,
        "voice": _Voice,
    }
    line = phones[worker.channel](app, services, worker)
    line.begin()
    for hop in range(1, MAX_HOPS + 1):
        answer = _answer(services, worker, code)
        if answer is None or not line.open:
            return hop
        line.send(answer)
    raise RuntimeError("a demo conversation did not end")


def _answer(services: Services, worker: DemoWorker, code: str) -> str | None:
    """What the worker says to the pending question; None when nothing is pending."""
    pseudonym = services.identity.pseudonymise(worker.number)
    session = services.sessions.load(pseudonym.value)
    if session is None or session.current is None:
        return None
    if session.current == RESUME_PROMPT:
        return "1"
    flows, texts = services.registry.current()
    if session.current == LANGUAGE_PROMPT:
        question_type = LANGUAGE
        question = None
    else:
        question = flows[session.flow or ""].question(session.current)
        question_type = question.type
    if question_type == LANGUAGE:
        menu = languages_for(pseudonym.country, texts.languages())
        return str(menu.index(worker.language) + 1)
    if question_type == CONSENT:
        return "1"
    if question_type == WORKPLACE:
        return code
    assert question is not None
    return worker.choose(question)


class _Sms:
    """Twilio SMS or WhatsApp, signed as Twilio signs."""

    path = "/webhooks/twilio/sms"

    def __init__(self, app: Flask, services: Services, worker: DemoWorker):
        self.client, self.services, self.worker = app.test_client(), services, worker
        self.open = True

    def begin(self) -> None:
        self.send("hello")

    def send(self, text: str) -> None:
        sender = self.worker.number
        if self.worker.channel == "whatsapp":
            sender = "whatsapp:" + sender
        sid = "SM" + secrets.token_hex(16)
        form = {"From": sender, "To": "+15005550006", "Body": text, "MessageSid": sid}
        _post_signed(self.client, self.services, self.path, form)


class _Ussd:
    """An Africa's Talking USSD session: one session id, cumulative text."""

    def __init__(self, app: Flask, services: Services, worker: DemoWorker):
        self.client, self.services, self.worker = app.test_client(), services, worker
        self.session_id = "ATUid_" + secrets.token_hex(16)
        self.inputs: list[str] = []
        self.open = True

    def begin(self) -> None:
        self._post()

    def send(self, text: str) -> None:
        self.inputs.append(text)
        self._post()

    def _post(self) -> None:
        form = {
            "sessionId": self.session_id,
            "serviceCode": "*384*1234#",
            "phoneNumber": self.worker.number,
            "networkCode": "63902",
            "text": "*".join(self.inputs),
        }
        token = self.services.config.at_webhook_token or ""
        response = self.client.post("/webhooks/at/ussd", query_string={"token": token}, data=form)
        _check(response)
        self.open = response.get_data(as_text=True).startswith("CON ")


class _Voice:
    """A Twilio call: the first request, then each <Gather>'s action with the keys."""

    path = "/webhooks/twilio/voice"

    def __init__(self, app: Flask, services: Services, worker: DemoWorker):
        self.client, self.services, self.worker = app.test_client(), services, worker
        self.sid = "CA" + secrets.token_hex(16)
        self.action: str | None = None
        self.open = True

    def begin(self) -> None:
        self._post(self.path, CallStatus="ringing")

    def send(self, keys: str) -> None:
        self._post(self.action or self.path, Digits=keys)

    def _post(self, target: str, **extra: str) -> None:
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        form = {
            "CallSid": self.sid,
            "From": self.worker.number,
            "To": "+15005550006",
            "CallStatus": "in-progress",
            "Direction": "inbound",
            **extra,
        }
        response = _post_signed(self.client, self.services, path, form)
        gather = ElementTree.fromstring(response.get_data()).find("Gather")
        self.open = gather is not None
        self.action = gather.get("action") if gather is not None else None


def _post_signed(client, services: Services, path: str, form: dict):
    token = services.config.twilio_auth_token or ""
    signature = RequestValidator(token).compute_signature(services.config.public_url + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    _check(response)
    return response


def _check(response) -> None:
    if response.status_code != 200:
        raise RuntimeError(
            f"the demo's request was refused: {response.status_code} "
            f"{response.get_data(as_text=True).strip()[:200]}"
        )
