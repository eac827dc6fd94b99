"""The journeys the at-rest audit runs (issue 7, item 9), one function per step, in ``STEPS``'
order, against real gunicorn and RQ workers (tests/e2e/processes.py).

Every channel (Twilio SMS and WhatsApp, Africa's Talking SMS and USSD, Twilio and AT Voice),
and what goes wrong in production: provider retries, malformed requests, a callback whose
provider is unreachable (its job raises and is retried), replies the SMS API refuses (retried
from the outbox), a worker SIGKILLed in the middle of a drain (another worker takes the job
over), workers opting in to the contact vault, and two key rotations: one with a grace period
(``workervoice salts rotate``), in which two workers come back (their profiles and latest
answers move; one leaves yesterday's answers behind), its old key then destroyed by the clock;
and one with a grace period of 0 days, whose old key goes as the new one takes over. Workers
answer before, between and after.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from rq.job import Job
from rq.registry import StartedJobRegistry
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from gateway.queues import PERSIST
from gateway.services import Services
from store.models import Answer, PseudonymKey, Worker

from ..conftest import AT_TOKEN
from ..support import (
    at_sms_form,
    message_id,
    options,
    twilio_signature,
    twilio_sms_form,
)
from .processes import FakeAfricasTalking, Processes, post_sms
from .test_voice_ussd_pipeline import ENROL, AtCall, Call, Handset, TwilioCall, menu_key
from .test_voice_ussd_pipeline import Worker as Caller

CODE = "4321"
CALLBACK = "+8801999000111"  # the workplace's own number for missed calls: not a worker's
TWILIO_SMS = "+8801711000401"
WHATSAPP = "whatsapp:+8801711000402"
AT_SMS = "+254711000403"
USSD = "+254711000404"
VOICE = "+8801711000405"
CALLER = "+8801711000406"  # rings the callback number; the call back cannot be placed
REFUSED = "+254711000407"  # the AT SMS API answers 500 for this one's replies
STRAY = "+8801711000408"  # only ever in malformed requests
LATE = "+254711000409"  # first seen after the destruction
AT_VOICE = "+254711000410"
NUMBERS = [TWILIO_SMS, WHATSAPP, AT_SMS, USSD, VOICE, CALLER, REFUSED, STRAY, LATE, AT_VOICE]
FINISHED = "Your answers are anonymous."
ENROLLED = "you are enrolled"


@dataclass
class World:
    """What the journeys act on, and what they leave for the test to check."""

    processes: Processes
    services: Services
    fake_at: FakeAfricasTalking
    at_replies: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)  # "first", "second", "third": key ids
    killed: list[int] = field(default_factory=list)  # pids SIGKILLed
    answered_last: list[str] = field(default_factory=list)  # who answered under the last key

    @property
    def url(self) -> str:
        return self.processes.url

    def sms(self, address: str, text: str, sid: str | None = None) -> str:
        """One SMS, over Twilio for a Bangladeshi number or WhatsApp, over AT for a Kenyan
        one; the reply the worker reads."""
        provider = "at" if address.startswith("+254") else "twilio"
        response = post_sms(self.url, provider, address, text, sid)
        if provider == "twilio":
            return response.text
        if sid is not None and self.at_replies.get(address + sid):
            return self.fake_at.wait_for(address, self.at_replies[address + sid])
        self.at_replies[address] = self.at_replies.get(address, 0) + 1
        if sid is not None:
            self.at_replies[address + sid] = self.at_replies[address]
        return self.fake_at.wait_for(address, self.at_replies[address])


# -- conversations --------------------------------------------------------------------------------
def reply_to(prompt: str) -> str:
    """What the worker answers: English at the language menu, the workplace's code when asked,
    else the first option, or 3 for a number."""
    choices = options(prompt)
    if "English" in choices:
        return str(choices.index("English") + 1)
    if "code of your workplace" in prompt:
        return CODE
    return "1" if choices else "3"


def converse(send: Callable[[str], str], first: str, retry_at: int | None = None) -> int:
    """Answer prompt after prompt until the check-in finishes; the messages sent. At message
    ``retry_at`` the provider delivers the same message twice (``send`` is then given a
    message id, and must answer alike)."""
    reply, sent = send(first), 1
    while FINISHED not in reply:
        assert sent < 30, f"the conversation did not finish: {reply!r}"
        answer = reply_to(reply)
        if sent == retry_at:
            sid = message_id("SM")
            reply = send_retried(send, answer, sid)
        else:
            reply = send(answer)
        sent += 1
    return sent


def send_retried(send: Callable[..., str], answer: str, sid: str) -> str:
    first = send(answer, sid)
    assert send(answer, sid) == first, "a provider's retry was answered differently"
    return first


def sms_checkin(world: World, address: str, first: str = "hello", retry_at: int | None = None):
    converse(lambda text, sid=None: world.sms(address, text, sid), first, retry_at)


def opt_in(world: World, address: str) -> None:
    """The worker agrees to be texted (tests/engine/test_contact.REMIND): their number goes to
    the contact vault, sealed to their pseudonym."""
    assert "May we text you" in world.sms(address, "REMIND")
    assert "Morning or evening?" in world.sms(address, "1")
    assert "Thank you." in world.sms(address, "1")


def ussd_checkin(world: World, address: str, retry_at: int = 3) -> None:
    """Dial, read every page, answer each screen as ``reply_to`` says, until END; one hop is
    sent twice (AT retrying it)."""
    handset = Handset(world.url, Caller(address, "en"))
    screen, hops = handset.dial(), 0
    while screen.startswith("CON"):
        assert hops < 40, screen
        pages = handset.read(screen)
        prompt = "\n".join(page.removeprefix("CON ") for page in pages)
        screen = handset.press(reply_to(prompt))
        hops += 1
        if hops == retry_at:
            assert handset.send() == screen, "a retried USSD hop was answered differently"
    assert FINISHED in screen or ENROLLED in screen, screen
    handset.ended()


def voice_checkin(world: World, address: str, provider: type[Call] = TwilioCall) -> None:
    """A call (Twilio's, or Africa's Talking's): English at the menu, then 1 at each option, the
    code, 3 for a number (ended by #), until the call hangs up; the first turn is sent twice."""
    call = provider(world.url, Caller(address, "en"))
    turn = call.press(menu_key(call.ring(), "en"))
    assert call.again().body == turn.body, "a retried turn was answered differently"
    pressed = 0
    while turn.keys is not None:
        assert pressed < 40, turn.body
        if turn.keys.get("numDigits") == "1":
            key = "1"
        elif turn.hears("en", "enrol/workplace", ENROL.question("workplace").ask):
            key = CODE
        else:
            key = "3"
        turn = call.press(key)
        pressed += 1
    assert FINISHED in turn.text, turn.body
    call.hang_up()


# -- helpers -----------------------------------------------------------------------------------
def wait_until(done: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def answers(services: Services, *where) -> list[Answer]:
    with services.db.session() as session:
        return list(session.scalars(select(Answer).where(*where)))


def drained(services: Services) -> bool:
    """The event log has nothing left for the database."""
    return int(services.redis.xlen("wv:events")) == 0


def pseudonym(services: Services, address: str) -> str:
    return services.identity.pseudonymise(address).value


@contextmanager
def database_writes_held(services: Services) -> Iterator[None]:
    """No one else can write the answers table while this lasts (a long lock, as a vacuum or a
    migration would hold): a drain that gets there waits, in the middle of its job."""
    url = make_url(services.config.database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database, timeout=30, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    with services.db.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text("LOCK TABLE answers IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            transaction.rollback()


def started_drain_worker(services: Services) -> int | None:
    """The pid of the worker running a persist job now, if one is."""
    registry = StartedJobRegistry(PERSIST, connection=services.redis)
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, connection=services.redis)
        if job.worker_name:
            return int(job.worker_name.rsplit(".", 1)[1])
    return None


def key_ids(services: Services) -> dict[str, int]:
    with services.db.session() as session:
        return {k.status: k.id for k in session.scalars(select(PseudonymKey))}


# -- the steps -----------------------------------------------------------------------------------
def sms_workers_answer(world: World) -> None:
    """Twilio SMS, WhatsApp and AT SMS workers enrol and answer the whole check-in; one message
    of each of the first and last is delivered twice by its provider."""
    world.keys["first"] = key_ids(world.services)["current"]
    sms_checkin(world, TWILIO_SMS, retry_at=5)
    opt_in(world, TWILIO_SMS)  # comes back in the grace period: the contact moves with them
    sms_checkin(world, WHATSAPP)
    opt_in(world, WHATSAPP)  # does not: the contact goes with the first key
    sms_checkin(world, AT_SMS, retry_at=6)


def ussd_and_voice_workers_answer(world: World) -> None:
    ussd_checkin(world, USSD)
    voice_checkin(world, VOICE)
    voice_checkin(world, AT_VOICE, AtCall)


def malformed_requests(world: World) -> None:
    """What attackers and broken gateways send, each refused without keeping the number: a
    bad signature, a wrong token, forms missing fields or with a sender that is no number, the
    number in a URL path, a %0a in a path, a request line gunicorn cannot parse."""
    url, form = world.url, twilio_sms_form(STRAY, "hello")
    refused = [
        requests.post(
            url + "/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": "bad"}
        ),
        requests.post(f"{url}/webhooks/at/sms?token=wrong", data=at_sms_form(STRAY, "hi")),
        requests.post(
            f"{url}/webhooks/at/ussd?token={AT_TOKEN}",
            data={"serviceCode": "*384*1234#", "phoneNumber": STRAY, "text": ""},  # no session
        ),
    ]
    unsigned = {k: v for k, v in form.items() if k != "Body"}
    unsigned["From"] = STRAY + "x"
    refused.append(
        requests.post(
            url + "/webhooks/twilio/sms",
            data=unsigned,
            headers={"X-Twilio-Signature": twilio_signature(unsigned)},
        )
    )
    statuses = [r.status_code for r in refused]
    assert statuses[:2] == [403, 403] and all(400 <= s < 500 for s in statuses), statuses
    digits = STRAY.lstrip("+")
    for path in (
        f"/webhooks/{STRAY}/sms",
        f"/webhooks/at/sms/{digits}?token={AT_TOKEN}",
        f"/webhooks/twilio/voice%0a{STRAY}%20200",
        f"/{digits[3:]}/0{digits[3:]}",
    ):
        assert raw(world, f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert raw(world, f"GET /webhooks/at/sms?from={STRAY}&token={AT_TOKEN}\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )


def raw(world: World, request: str) -> bytes:
    with socket.create_connection(("127.0.0.1", world.processes.port), timeout=5) as sock:
        sock.sendall(request.encode() if "Connection" in request else _closing(request))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _closing(request: str) -> bytes:
    head, _, rest = request.partition("\r\n")
    if " HTTP/1.1" not in head:
        return request.encode()
    return f"{head}\r\nConnection: close\r\n{rest}".encode()


def callback_cannot_be_placed(world: World) -> None:
    """A worker rings the callback number; the call is rejected and a callback job queued, which
    raises (Twilio unreachable) and is retried."""
    form = {
        "CallSid": "CA" + secrets.token_hex(16),
        "AccountSid": "AC" + "e" * 32,
        "From": CALLER,
        "To": CALLBACK,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    response = requests.post(
        world.url + "/webhooks/twilio/voice",
        data=form,
        timeout=10,
        headers={"X-Twilio-Signature": twilio_signature(form, path="/webhooks/twilio/voice")},
    )
    assert response.status_code == 200 and "<Reject" in response.text, response.text


def replies_refused(world: World) -> None:
    """The SMS API answers 500 for one worker's replies: each goes back to the outbox for
    another try."""
    world.fake_at.failing.add(REFUSED)
    post_sms(world.url, "at", REFUSED, "hello")
    wait_until(
        lambda: int(world.services.redis.zcard("wv:outbox:retry")) > 0, "a reply to try again"
    )


def worker_killed_mid_drain(world: World) -> None:
    """An answer's drain waits on the database; its worker is SIGKILLed there; the answer is
    stored all the same, by another worker taking the job over."""
    who = pseudonym(world.services, AT_SMS)

    def latest() -> float:
        return max(
            a.answered_at.timestamp() for a in answers(world.services, Answer.pseudonym == who)
        )

    before = latest()
    with database_writes_held(world.services):
        reply = world.sms(AT_SMS, "CHECK")
        world.sms(AT_SMS, reply_to(reply))
        wait_until(lambda: started_drain_worker(world.services) is not None, "a drain started")
        pid = started_drain_worker(world.services)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        world.killed.append(pid)
    wait_until(lambda: latest() > before, "the killed drain's answer", seconds=40)


def yesterday_for_one_worker(world: World) -> None:
    """The Twilio worker's answers so far were given yesterday (moved a day back), and they
    answer again today: two answers to each question under the first key."""
    wait_until(lambda: drained(world.services), "the event log drained")
    who = pseudonym(world.services, TWILIO_SMS)
    with world.services.db.session() as session:
        for answer in session.scalars(select(Answer).where(Answer.pseudonym == who)):
            answer.answered_on -= timedelta(days=1)
            answer.answered_at -= timedelta(days=1)
    sms_checkin(world, TWILIO_SMS, first="CHECK")
    wait_until(lambda: drained(world.services), "the event log drained")


def rotate(world: World) -> None:
    """``workervoice salts rotate`` with a grace period: the new key takes over in every process
    a few seconds later; the old one lives on for returning workers."""
    output = world.processes.run("cli-salts-rotate", ["salts", "rotate"])
    assert "takes over" in output, output
    with world.services.db.session() as session:
        new = session.scalar(select(PseudonymKey).where(PseudonymKey.status == "current"))
        assert new is not None and new.activates_at is not None
        takes_over = new.activates_at.timestamp()
        world.keys["second"] = new.id
    time.sleep(max(0.0, takes_over - time.time()) + 0.3)


def returning_workers_move(world: World) -> None:
    """Two workers come back in the grace period: their profiles and latest answers move to
    the new key's pseudonyms."""
    for address in (TWILIO_SMS, AT_SMS):
        sms_checkin(world, address, first="CHECK")
    wait_until(lambda: drained(world.services), "the event log drained")
    with world.services.db.session() as session:
        moved = session.scalars(
            select(Worker.pseudonym).where(Worker.key_id == world.keys["second"])
        ).all()
    assert set(moved) >= {pseudonym(world.services, a) for a in (TWILIO_SMS, AT_SMS)}


def old_key_destroyed(world: World) -> None:
    """The clock, with a grace period of 0 days, destroys the old key (its secret NULL, the
    profiles of workers who did not come back deleted)."""
    world.processes.run("clock", ["clock", "--once"], WORKERVOICE_SALT_GRACE_DAYS="0")
    with world.services.db.session() as session:
        old = session.get(PseudonymKey, world.keys["first"])
        assert old is not None and old.status == "destroyed" and old.secret is None
    time.sleep(2.5)  # every process has dropped the key from its ring


def workers_answer_after(world: World) -> None:
    """After the destruction: a new worker, a worker who moved, and one who did not come back
    in time (enrolled again)."""
    sms_checkin(world, LATE)
    sms_checkin(world, TWILIO_SMS, first="CHECK")
    ussd_checkin(world, USSD)
    wait_until(lambda: drained(world.services), "the event log drained")


def rotated_and_destroyed_at_once(world: World) -> None:
    """``workervoice salts rotate`` with a grace period of 0 days: the key in force is
    destroyed as its successor takes over (no one can come back to it)."""
    output = world.processes.run(
        "cli-salts-rotate", ["salts", "rotate"], WORKERVOICE_SALT_GRACE_DAYS="0"
    )
    assert f"key {world.keys['second']} destroyed" in output, output
    world.keys["third"] = key_ids(world.services)["current"]
    time.sleep(2.5)  # every process has dropped the key from its ring


def workers_answer_last(world: World) -> None:
    """Under the third key: two workers whose profiles went with a destroyed key enrol again,
    by SMS and by a call, and one who answered under the second key only."""
    sms_checkin(world, WHATSAPP)
    voice_checkin(world, VOICE)
    sms_checkin(world, LATE)
    opt_in(world, LATE)
    world.answered_last += [WHATSAPP, VOICE, LATE]
    wait_until(lambda: drained(world.services), "the event log drained")


STEPS = [
    sms_workers_answer,
    ussd_and_voice_workers_answer,
    malformed_requests,
    callback_cannot_be_placed,
    replies_refused,
    worker_killed_mid_drain,
    yesterday_for_one_worker,
    rotate,
    returning_workers_move,
    old_key_destroyed,
    workers_answer_after,
    rotated_and_destroyed_at_once,
    workers_answer_last,
]
