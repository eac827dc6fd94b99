"""Driving hops for the cache's tests (tests/test_directory_cache.py, test_directory_mirror.py):
a worker walking a whole conversation on each channel, the SQL a stretch of code sends, a
database that refuses connections, and the jobs a worker would run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import event, func, select

from gateway import persistence
from gateway.directory_cache import CachedProfile
from gateway.queues import PERSIST
from gateway.queues import make as make_queues
from gateway.services import Services
from store import directory
from store.models import Answer, Worker, Workplace

from .channels.test_at_ussd import UssdPhone
from .channels.test_at_ussd import ended as ussd_ended
from .channels.test_at_ussd import enrol as ussd_enrol
from .channels.test_at_voice import Phone as AtCall
from .channels.test_twilio_voice import Phone as TwilioCall
from .conftest import AT_TOKEN
from .support import SmsWorker, add_workplace, at_sms_form, post_at_sms

CODE = "4321"
CALLBACK = "+8809612345678"  # the workplace's callback number: not in Redis either
PHONES = {  # one Bangladeshi worker per channel (English is their second language)
    "twilio-sms": "+8801711283946",
    "whatsapp": "+8801711283947",
    "at-sms": "+8801711283948",
    "at-ussd": "+8801711283949",
    "twilio-voice": "+8801711283950",
    "at-voice": "+8801711283951",
}


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- a worker on each channel -----------------------------------------------------------------
def _sms(client, address: str) -> Callable[[str], object]:
    return SmsWorker(client, address).send


def _at_sms(client, phone: str) -> Callable[[str], object]:
    def send(text: str) -> None:
        assert post_at_sms(client, at_sms_form(phone, text)).status_code == 200

    return send


def _walk_texts(send: Callable[[str], object], services: Services, phone: str) -> None:
    for text in ("hello", "2", "1", CODE):  # English, I agree, the code
        send(text)
    _answer_all(lambda: send("1"), services, phone)


def _walk_ussd(client, services: Services, phone: str) -> None:
    handset = UssdPhone(client, phone, session_id="ATUid_" + phone[-6:])
    ussd_enrol(handset, "English", "en")
    _answer_all(lambda: handset.read(handset.press("1")), services, phone)
    notice = ussd_ended(handset.text, handset.session_id, phone, status="Success")
    assert client.post(f"/webhooks/at/ussd/events?token={AT_TOKEN}", data=notice).status_code == 200


def _walk_call(call, services: Services, phone: str) -> None:
    for digits in ("2", "1", CODE):
        call.press(digits)
    _answer_all(lambda: call.press("1"), services, phone)


def walk(channel: str, client, services: Services) -> str:
    """Enrol and answer the whole check-in on ``channel``; the worker's number."""
    phone = PHONES[channel]
    if channel == "at-ussd":
        _walk_ussd(client, services, phone)
    elif channel == "twilio-voice":
        call = TwilioCall(client, phone, sid="CA" + phone[-6:].rjust(32, "0"))
        call.dial()
        _walk_call(call, services, phone)
        call.hang_up()  # the status callback
    elif channel == "at-voice":
        at_call = AtCall(client, phone, session="ATVId_" + phone[-6:])
        at_call.post(f"?token={AT_TOKEN}")
        _walk_call(at_call, services, phone)
        at_call.post(f"?token={AT_TOKEN}", isActive="0", durationInSeconds="30")  # the end
    elif channel == "at-sms":
        _walk_texts(_at_sms(client, phone), services, phone)
    else:
        address = f"whatsapp:{phone}" if channel == "whatsapp" else phone
        _walk_texts(_sms(client, address), services, phone)
    return phone


def _answer_all(answer: Callable[[], object], services: Services, phone: str) -> None:
    """Answer 1 (Yes, or one day: valid for every check-in question) until none is pending."""
    for _ in range(15):
        if _enrolled_and_done(services, phone):
            return
        answer()
    raise AssertionError("the check-in did not finish")


def _enrolled_and_done(services: Services, phone: str) -> bool:
    pseudonym = services.identity.pseudonymise(phone).value
    session = services.sessions.load(pseudonym)
    cached = services.profiles.load(pseudonym) is not None
    return cached and (session is None or session.current is None)


CHANNELS = list(PHONES)


# -- the rest of the world -------------------------------------------------------------------
def waiting_queues(services: Services) -> dict[str, Queue]:
    """Queues whose jobs wait for a worker, as in production (the embedded default would run
    them inside the hop, and their SQL with them)."""
    return make_queues(services.redis, is_async=True)


def wait_for_workers(services: Services, monkeypatch=None) -> dict[str, Queue]:
    """Give ``services`` waiting queues (and an event log draining through them), with a short
    patience for drains that meet the database away."""
    waiting = waiting_queues(services)
    if monkeypatch is None:
        services.__dict__["queues"] = waiting
        services.__dict__.pop("events", None)
        services.__dict__.pop("outbox", None)
    else:
        monkeypatch.setitem(services.__dict__, "queues", waiting)
        monkeypatch.delitem(services.__dict__, "events", raising=False)
        monkeypatch.delitem(services.__dict__, "outbox", raising=False)
        monkeypatch.setattr(persistence, "PATIENCE_SECONDS", 0.3)
    return waiting


def add_callback_workplace(services: Services) -> str:
    """The workplace (code CODE) with a callback number; its slug."""
    add_workplace(services, code=CODE)
    with services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number=CALLBACK)
    return "dhaka-knit"


@contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """Every SQL statement sent to the database meanwhile."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)


@contextmanager
def database_down(services: Services) -> Iterator[list[int]]:
    """The database refuses every connection meanwhile; yields the attempts."""
    engine, attempts = services.db.engine, []

    def refuse(dialect, *_args):
        attempts.append(1)
        raise dialect.loaded_dbapi.OperationalError("connection refused (test)")

    engine.dispose()
    event.listen(engine, "do_connect", refuse)
    try:
        yield attempts
    finally:
        event.remove(engine, "do_connect", refuse)


def work(app, queues: dict[str, Queue]) -> None:
    """Run every job queued, as the workers would, until none is left."""
    with app.app_context():
        connection = queues[PERSIST].connection
        SimpleWorker(list(queues.values()), connection=connection).work(burst=True)


def retry_now(queues: dict[str, Queue]) -> int:
    """Move the jobs waiting for their time (retries, delayed drains) back to their queue, as
    the scheduler will."""
    moved = 0
    for queue in queues.values():
        registry = ScheduledJobRegistry(queue=queue)
        for job_id in registry.get_job_ids():
            registry.remove(job_id)
            queue.enqueue_job(Job.fetch(job_id, connection=queue.connection))
            moved += 1
    return moved


def scheduled_or_queued(queues: dict[str, Queue]) -> list[Job]:
    """Every job waiting: in a queue, or for its time (a retry, a delayed callback)."""
    jobs = []
    for queue in queues.values():
        later = ScheduledJobRegistry(queue=queue).get_job_ids()
        jobs += [*queue.get_jobs(), *(Job.fetch(i, connection=queue.connection) for i in later)]
    return jobs


def logged_batches(redis) -> list[dict]:
    """The requests' entries waiting in the event log, in order, decoded."""
    entries = redis.xrange(persistence.STREAM_KEY)
    return [json.loads(fields[persistence.FIELD.encode()]) for _, fields in entries]


def logged_events(redis) -> list[dict]:
    """Every event waiting in the event log, in order."""
    return [event for batch in logged_batches(redis) for event in batch["events"]]


def queued_answers(queues: dict[str, Queue]) -> int:
    """Answers in the event log, waiting for the database."""
    events = logged_events(queues[PERSIST].connection)
    return sum(e["kind"] == "answer_recorded" for e in events)


def stored_answers(services: Services, phone: str) -> int:
    pseudonym = services.identity.pseudonymise(phone).value
    with services.db.session() as session:
        query = select(func.count()).select_from(Answer).where(Answer.pseudonym == pseudonym)
        return session.scalar(query) or 0


def stored_profile(services: Services, phone: str) -> tuple[str, ...] | None:
    pseudonym = services.identity.pseudonymise(phone).value
    with services.db.session() as session:
        row = session.execute(
            select(Worker.language, Workplace.slug)
            .join(Workplace, Workplace.id == Worker.workplace_id)
            .where(Worker.pseudonym == pseudonym)
        ).first()
    return tuple(row) if row else None


def cached(services: Services, phone: str) -> CachedProfile | None:
    return services.profiles.load(services.identity.pseudonymise(phone).value)
