"""STOP, DELETE and a new licence version through the real webhook routes, with the jobs waiting
for a worker as in production: what goes at once (Redis: session, cached profile, the replies
waiting in the outbox, also under the previous key's pseudonym), what the drain then deletes
(profile, consent ledger, and for DELETE every answer), and consent asked again on every channel
once WORKERVOICE_LICENCE_VERSION changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway import outbox
from gateway.engine import words
from gateway.engine.answers import ERASE_PROMPT
from gateway.i18n import Texts
from gateway.keys import KeyKeeper
from gateway.outbox import OUTBOX_KEY, RETRY_KEY, Reply
from gateway.persistence import FIELD
from gateway.services import Services
from store import consents
from store.keyring import LEAD_SECONDS
from store.models import Tombstone, Worker

from .channels.test_at_ussd import UssdPhone
from .channels.test_at_voice import Phone as AtCall
from .channels.test_twilio_voice import Phone as TwilioCall
from .conftest import AT_TOKEN, catalogs
from .hops import (
    PHONES,
    add_callback_workplace,
    cached,
    logged_events,
    stored_answers,
    stored_profile,
    walk,
    work,
)
from .leaks import dump_database, dump_redis, number_forms
from .support import SmsWorker, at_sms_form, post_at_sms
from .test_outbox import at_services

__all__ = ["at_services"]  # a fixture, used by name

TEXTS = Texts.load(catalogs())
CONSENT = (
    "WorkerVoice asks a few short questions about your work. Your phone number is never stored "
    "and no one at your workplace sees who answered. Do you agree?"
)
TEXT_CHANNELS = ["twilio-sms", "whatsapp", "at-sms"]


@pytest.fixture
def workplace(services) -> str:
    return add_callback_workplace(services)


def texter(channel: str, client, phone: str) -> Callable[[str], str]:
    """Send a text as the worker on ``channel``; the reply in the response ('' on AT SMS,
    whose replies go to the outbox)."""
    if channel == "at-sms":

        def send_at(text: str) -> str:
            assert post_at_sms(client, at_sms_form(phone, text)).status_code == 200
            return ""

        return send_at
    address = f"whatsapp:{phone}" if channel == "whatsapp" else phone
    return SmsWorker(client, address).send


def pseudonym(services: Services, phone: str) -> str:
    return services.identity.pseudonymise(phone).value


def ledger(services: Services, phone: str) -> list[str]:
    with services.db.session() as session:
        return [row.licence for row in consents.ledger(session, pseudonym(services, phone))]


def waiting_replies(services: Services) -> list[Reply]:
    entries = services.redis.xrange(OUTBOX_KEY)
    return [Reply.decode(fields[FIELD.encode()]) for _, fields in entries]


def no_number_anywhere(services: Services, phone: str) -> None:
    stored = dump_database(services) + dump_redis(services).decode("utf-8", "replace")
    assert not any(form in stored for form in number_forms(phone))


# -- DELETE -------------------------------------------------------------------------------------
@pytest.mark.parametrize("channel", TEXT_CHANNELS)
def test_delete_is_confirmed_then_erases_the_worker_and_every_answer(
    app, client, services, workplace, queues, channel
):
    phone = walk(channel, client, services)
    work(app, queues)
    assert stored_answers(services, phone) > 0 and ledger(services, phone) == ["1"]
    send = texter(channel, client, phone)
    reply = send("DELETE")
    if channel != "at-sms":
        assert TEXTS.service("en", words.ERASE_CONFIRM) in reply and "1. Yes\n2. No" in reply
    assert services.sessions.load(pseudonym(services, phone)).current == ERASE_PROMPT
    reply = send("2")  # anything but the first option keeps everything
    if channel != "at-sms":
        assert reply == TEXTS.service("en", words.ERASE_KEPT)
    work(app, queues)
    assert stored_answers(services, phone) > 0 and cached(services, phone) is not None
    send("DELETE")
    reply = send("1")
    if channel != "at-sms":
        assert reply == TEXTS.service("en", words.ERASED)
    assert cached(services, phone) is None  # at once, before any job
    assert services.sessions.load(pseudonym(services, phone)) is None
    work(app, queues)
    assert stored_answers(services, phone) == 0
    assert stored_profile(services, phone) is None and ledger(services, phone) == []
    with services.db.session() as session:
        assert session.get(Tombstone, pseudonym(services, phone)).erased_at is not None
    no_number_anywhere(services, phone)
    assert channel == "at-sms" or "2. English" in send("hello")  # a stranger: the language menu


def test_delete_on_ussd_in_the_workers_language(app, client, services, workplace, queues):
    phone = walk("at-ussd", client, services)
    work(app, queues)
    assert stored_answers(services, phone) > 0
    handset = UssdPhone(client, phone, session_id="ATUid_delete")
    handset.dial()
    pages = handset.read(handset.press("DELETE"))
    assert pages[0].startswith("CON ") and "Erase your details" in pages[0]
    screen = handset.press("1")
    assert screen.startswith("END ") and TEXTS.service("en", words.ERASED) in screen
    work(app, queues)
    assert stored_answers(services, phone) == 0 and stored_profile(services, phone) is None


def test_delete_after_stop_still_erases_the_answers(app, client, services, workplace, queues):
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    worker = SmsWorker(client, phone)
    assert worker.send("STOP") == ""  # Twilio confirms its own opt-out words
    work(app, queues)
    assert stored_answers(services, phone) > 0  # STOP leaves the anonymous answers
    # Nothing says their language any more: their number's country's is guessed (Bangla).
    assert TEXTS.service("bn", words.ERASE_CONFIRM) in worker.send("DELETE")
    assert worker.send("Yes") == TEXTS.service("bn", words.ERASED)
    work(app, queues)
    assert stored_answers(services, phone) == 0


def test_a_translated_delete_is_confirmed_in_the_workers_language(
    app, client, services, workplace, queues
):
    phone = PHONES["twilio-sms"]
    worker = SmsWorker(client, phone)
    worker.enrol(language_choice="1")  # বাংলা
    reply = worker.send(TEXTS.service("bn", words.KEYWORD_DELETE))
    assert TEXTS.service("bn", words.ERASE_CONFIRM) in reply
    assert worker.send(TEXTS.service("bn", words.YES)) == TEXTS.service("bn", words.ERASED)


# -- STOP ---------------------------------------------------------------------------------------
def test_stop_removes_the_workers_waiting_replies_at_once(app, client, services, workplace, queues):
    phone, other = PHONES["at-sms"], "+8801711283960"
    for number in (phone, other):
        send = texter("at-sms", client, number)
        send("hello")
        send("2")
    mine = pseudonym(services, phone)
    assert {r.who for r in waiting_replies(services)} == {mine, pseudonym(services, other)}
    late = Reply("at", "sealed-elsewhere", "a reply being retried", 1, who=mine)
    services.redis.zadd(RETRY_KEY, {late.encode(): 1.0})
    texter("at-sms", client, phone)("STOP")
    left = waiting_replies(services)
    assert [r.text for r in left if r.who == mine] == [TEXTS.service("en", words.STOPPED)]
    assert len([r for r in left if r.who != mine]) == 2  # the other worker's stay
    assert services.redis.zcard(RETRY_KEY) == 0
    assert services.sessions.forgotten_at(mine) is not None


def test_stop_forgets_the_worker_under_the_previous_key_too(
    app, client, services, workplace, queues
):
    """A worker enrolled under the key before a rotation, whose first message since is STOP:
    their session and profile under the old pseudonym go at once, and the stored ones under
    both with the drain."""
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    old = pseudonym(services, phone)
    with services.db.session() as session:
        assert session.get(Worker, old) is not None
    KeyKeeper(services).rotate(datetime.now(UTC) - timedelta(seconds=LEAD_SECONDS))  # in force now
    services.mirror.publish_keys()
    services.__dict__.pop("identity", None)  # this process reads the ring again
    who = services.identity.pseudonymise(phone)
    assert who.value != old and [p for _, p in who.earlier] == [old]
    assert services.profiles.load(old) is not None
    assert SmsWorker(client, phone).send("STOP") == ""
    assert services.profiles.load(old) is None and services.sessions.load(old) is None
    assert services.sessions.forgotten_at(old) is not None
    work(app, queues)
    with services.db.session() as session:
        assert consents.ledger(session, old) == []
        marks = set(session.scalars(select(Tombstone.pseudonym)))
        assert session.get(Worker, old) is None and session.get(Worker, who.value) is None
    assert marks == {who.value, old}


# -- a new licence version ----------------------------------------------------------------------
def licence(services: Services, monkeypatch, version: str) -> None:
    monkeypatch.setattr(
        services, "config", dataclasses.replace(services.config, licence_version=version)
    )


def test_a_new_licence_is_asked_at_the_next_contact_on_every_channel(
    app, client, services, workplace, queues, monkeypatch
):
    sms = walk("twilio-sms", client, services)
    ussd = walk("at-ussd", client, services)
    voice = walk("twilio-voice", client, services)
    at_voice = walk("at-voice", client, services)
    work(app, queues)
    licence(services, monkeypatch, "2")
    worker = SmsWorker(client, sms)
    assert CONSENT in worker.send("CHECK")
    assert "1." in worker.send("1")  # agreed: the check-in's first question
    handset = UssdPhone(client, ussd, session_id="ATUid_licence")
    pages = handset.read(handset.dial())
    assert any("Do you agree?" in page for page in pages)
    handset.press("1")
    call = TwilioCall(client, voice, sid="CA" + "9" * 32)
    said = " ".join(e.text or "" for e in call.dial().iter("Say"))
    assert "Do you agree?" in said
    call.press("1")
    at_call = AtCall(client, at_voice, session="ATVId_licence")
    root = at_call.post(f"?token={AT_TOKEN}")
    assert root is not None and "Do you agree?" in " ".join(e.text or "" for e in root.iter("Say"))
    at_call.press("1")
    work(app, queues)
    for phone in (sms, ussd, voice, at_voice):
        assert ledger(services, phone) == ["1", "2"]
        assert cached(services, phone).licence == "2"
    assert CONSENT not in worker.send("CHECK")  # asked once


def test_declining_a_new_licence_forgets_the_worker(
    app, client, services, workplace, queues, monkeypatch
):
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    licence(services, monkeypatch, "2025-06")
    worker = SmsWorker(client, phone)
    assert CONSENT in worker.send("hello")
    assert worker.send("2") == TEXTS.service("en", words.DECLINED)
    assert cached(services, phone) is None
    work(app, queues)
    assert stored_profile(services, phone) is None and ledger(services, phone) == []
    assert stored_answers(services, phone) > 0  # as after STOP: the anonymous answers stay


def test_declining_at_enrolment_stores_nothing(app, client, services, workplace, queues):
    phone = PHONES["twilio-sms"]
    worker = SmsWorker(client, phone)
    worker.send("hello")
    worker.send("2")  # English
    assert worker.send("2") == TEXTS.service("en", words.DECLINED)
    work(app, queues)
    assert cached(services, phone) is None and stored_profile(services, phone) is None
    assert ledger(services, phone) == []
    with services.db.session() as session:
        assert session.scalars(select(Tombstone)).all() == []


def test_a_delete_sent_by_text_is_confirmed_in_a_call(app, client, services, workplace, queues):
    """The confirmation a text asked is the worker's pending question, and a call puts it
    (press 1 for Yes), after the star key's hint."""
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    assert TEXTS.service("en", words.ERASE_CONFIRM) in SmsWorker(client, phone).send("DELETE")
    call = TwilioCall(client, phone, sid="CA" + "7" * 32)
    said = " ".join(e.text or "" for e in call.dial().iter("Say"))
    assert TEXTS.service("en", words.ERASE_CONFIRM) in said and "Press 1 for Yes" in said
    said = " ".join(e.text or "" for e in call.press("1").iter("Say"))
    assert TEXTS.service("en", words.ERASED) in said
    work(app, queues)
    assert stored_answers(services, phone) == 0 and stored_profile(services, phone) is None


def test_a_reply_a_drain_read_before_the_stop_is_not_sent(app, at_services, fake_at, queues):
    """STOP takes the worker's replies out of the outbox; one a drain had already read is
    dropped when that drain comes to send it, and the STOP's confirmation still goes out."""
    add_callback_workplace(at_services)
    phone = PHONES["at-sms"]
    send = texter("at-sms", app.test_client(), phone)
    send("hello")
    read_before = at_services.redis.xrange(OUTBOX_KEY)  # what a drain holds, not yet sent
    assert len(read_before) == 1
    send("STOP")
    with app.app_context():
        assert outbox._send(at_services, at_services.outbox, read_before) == {"dropped": 1}
        assert fake_at.requests == []
        outbox.send_waiting(0, 5.0)
    assert [r["form"]["message"] for r in fake_at.requests] == [TEXTS.service("bn", words.STOPPED)]


def test_an_outbox_entry_from_before_this_version_still_reads_and_is_sent():
    older = Reply.decode('["at", "sealed", "text", 2]')
    assert (older.who, older.at, older.attempt) == ("", "", 2)
    stopped = {"": datetime.now(UTC)}
    assert not older.left_before(stopped)  # nothing to tell whose it is: sent as before


# -- the star key on a call ---------------------------------------------------------------------
VOICE_CHANNELS = ["twilio-voice", "at-voice"]
STAR_MENU = TEXTS.service("en", words.STAR_MENU)


class Caller:
    """A new call from ``phone`` on either voice provider: the words said on its last turn,
    and whether it waits for keys."""

    def __init__(self, channel: str, client, phone: str):
        if channel == "twilio-voice":
            self.call = TwilioCall(client, phone, sid="CA" + "5" * 32)
        else:
            self.call = AtCall(client, phone, session="ATVId_star_key")
        self.channel = channel

    def dial(self) -> str:
        if self.channel == "twilio-voice":
            self.call.dial()
        else:
            self.call.post(f"?token={AT_TOKEN}")
        return self.said()

    def press(self, digits: str) -> str:
        self.call.press(digits)
        return self.said()

    def said(self) -> str:
        root = self.call.root
        return " ".join(e.text or "" for e in root.iter("Say")) if root is not None else ""

    @property
    def waiting(self) -> bool:
        root = self.call.root
        return root is not None and (any(root.iter("Gather")) or any(root.iter("GetDigits")))


def logged_kinds(services: Services) -> list[str]:
    """The kinds of the events waiting in the event log, in order."""
    return [event["kind"] for event in logged_events(services.redis)]


@pytest.mark.parametrize("channel", VOICE_CHANNELS)
def test_the_star_key_then_1_forgets_the_caller_at_once(
    app, client, services, workplace, queues, channel
):
    phone = walk(channel, client, services)
    work(app, queues)
    assert stored_answers(services, phone) > 0
    caller = Caller(channel, client, phone)
    said = caller.dial()
    assert said.startswith(TEXTS.service("en", words.STAR_HINT))  # told at the call's start
    said = caller.press("*")
    assert STAR_MENU in said and "Press 1 for Stop" in said and caller.waiting
    assert "Press 2 for Stop and erase all your answers" in said
    said = caller.press("1")
    assert said == TEXTS.service("en", words.STOPPED) and not caller.waiting  # the call ends
    assert cached(services, phone) is None  # at once, before any job
    assert services.sessions.load(pseudonym(services, phone)) is None
    assert services.sessions.forgotten_at(pseudonym(services, phone)) is not None
    assert "opted_out" in logged_kinds(services) and "erased" not in logged_kinds(services)
    work(app, queues)
    assert stored_profile(services, phone) is None and ledger(services, phone) == []
    assert stored_answers(services, phone) > 0  # as after STOP: the anonymous answers stay
    no_number_anywhere(services, phone)


@pytest.mark.parametrize("channel", VOICE_CHANNELS)
def test_the_star_key_then_2_is_confirmed_then_erases_every_answer(
    app, client, services, workplace, queues, channel
):
    phone = walk(channel, client, services)
    work(app, queues)
    assert stored_answers(services, phone) > 0
    caller = Caller(channel, client, phone)
    caller.dial()
    caller.press("*")
    said = caller.press("2")  # the second step: DELETE's confirmation
    assert TEXTS.service("en", words.ERASE_CONFIRM) in said and "Press 1 for Yes" in said
    assert cached(services, phone) is not None and logged_kinds(services) == []
    said = caller.press("1")
    assert said == TEXTS.service("en", words.ERASED) and not caller.waiting
    assert cached(services, phone) is None
    assert services.sessions.load(pseudonym(services, phone)) is None
    assert logged_kinds(services) == ["opted_out", "erased"]
    work(app, queues)
    assert stored_answers(services, phone) == 0
    assert stored_profile(services, phone) is None and ledger(services, phone) == []
    with services.db.session() as session:
        assert session.get(Tombstone, pseudonym(services, phone)).erased_at is not None
    no_number_anywhere(services, phone)


@pytest.mark.parametrize("channel", VOICE_CHANNELS)
@pytest.mark.parametrize("then", ["3", "*", "2 then 2"])
def test_the_star_key_then_another_key_asks_the_same_question_again(
    app, client, services, workplace, queues, channel, then
):
    phone = walk(channel, client, services)
    work(app, queues)
    answers, profile = stored_answers(services, phone), stored_profile(services, phone)
    caller = Caller(channel, client, phone)
    question = caller.dial().removeprefix(TEXTS.service("en", words.STAR_HINT)).strip()
    pending = services.sessions.load(pseudonym(services, phone)).current
    assert STAR_MENU in caller.press("*")
    if then == "2 then 2":  # DELETE's confirmation declined
        caller.press("2")
        said = caller.press("2")
        assert said.startswith(TEXTS.service("en", words.ERASE_KEPT))
        said = said.removeprefix(TEXTS.service("en", words.ERASE_KEPT)).strip()
    else:
        said = caller.press(then)
    assert said.endswith(question) and caller.waiting
    assert services.sessions.load(pseudonym(services, phone)).current == pending
    assert cached(services, phone) is not None and logged_kinds(services) == []
    work(app, queues)
    assert stored_answers(services, phone) == answers and stored_profile(services, phone) == profile
    caller.press("1")  # and the question takes its answer as before
    assert logged_kinds(services) == ["answer_recorded"]
