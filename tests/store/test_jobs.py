"""The event log's drain (gateway.persistence.drain) and store.jobs.write_batches, one request's
events at a time: idempotent, latest wins per local day, profiles kept newest, no phone
numbers. tests/test_persistence.py drives many at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text

from gateway import persistence
from gateway.channels import sms
from gateway.conversation import Inbound, Turned, handle
from gateway.engine.inputs import Message
from gateway.services import current
from gateway.sessions import Reply
from store import keyring
from store.models import Answer, Worker

from ..leaks import dump_database, dump_redis, number_forms
from ..support import SmsWorker, add_workplace, at_sms_form, post_at_sms, run_jobs

WHO = "a" * 64
FINISH = "Thank you. Your answers are anonymous."


@pytest.fixture
def key_id(services) -> int:
    with services.db.session() as session:
        return keyring.live_keys(session)[0].id


@pytest.fixture
def persist(app, key_id):
    """Append one request's events to the event log and drain it as the persist worker would,
    inside the app context; what was written."""

    def run(
        *events: dict, who: str = WHO, channel: str = "sms", received: datetime | None = None
    ) -> dict:
        batch = {
            "pseudonym": who,
            "key_id": key_id,
            "channel": channel,
            "received_at": (received or utc(25, 12)).isoformat(),
            "events": list(events),
        }
        with app.app_context():
            services = current()
            services.events.append_for_tests(batch)
            done = persistence.drain(0, 0.0)
        assert services.events.waiting() == 0
        return {k: done[k] for k in ("answers", "profiles", "forgotten", "erased", "consents")}

    return run


def answer(
    question: str,
    value,
    at: datetime,
    event_id: str,
    workplace: str | None = "dhaka-knit",
    flow: str = "checkin",
    version: str = "1",
) -> dict:
    return {
        "kind": "answer_recorded",
        "flow": flow,
        "version": version,
        "question": question,
        "value": value,
        "at": at.isoformat(),
        "workplace": workplace,
        "event_id": event_id,
    }


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def stored(services) -> list[Answer]:
    with services.db.session() as session:
        return list(session.scalars(select(Answer).order_by(Answer.answered_at)))


def profile(services, who: str = WHO) -> Worker | None:
    with services.db.session() as session:
        return session.get(Worker, who)


def test_the_same_batch_run_twice_stores_each_answer_once(services, persist):
    add_workplace(services)
    events = (
        answer("long_hours", "yes", utc(25, 4), "twilio:SM1:0"),
        answer("pay_fairness", 4, utc(25, 4), "twilio:SM1:1"),
    )
    first = persist(*events)
    second = persist(*events)
    rows = stored(services)
    assert first["answers"] == second["answers"] == 2
    assert sorted((r.question_id, r.value_text, r.value_number) for r in rows) == [
        ("long_hours", "yes", None),
        ("pay_fairness", None, 4.0),
    ]


def test_a_second_answer_the_same_local_day_replaces_the_first(services, persist):
    add_workplace(services)
    persist(answer("long_hours", "yes", utc(25, 3), "twilio:SM1:0"))
    persist(answer("long_hours", "no", utc(25, 9), "twilio:SM2:0"))
    [row] = stored(services)
    assert (row.value_text, row.event_id) == ("no", "twilio:SM2:0")
    assert row.answered_at.astimezone(UTC) == utc(25, 9)
    assert row.answered_on == date(2026, 11, 25)


def test_an_older_event_replayed_after_a_newer_one_does_not_overwrite_it(services, persist):
    add_workplace(services)
    older = answer("long_hours", "yes", utc(25, 3), "twilio:SM1:0")
    newer = answer("long_hours", "no", utc(25, 9), "twilio:SM2:0", version="2")
    persist(older)
    persist(newer)
    persist(older)  # an RQ retry of the first message's job, after the second one ran
    [row] = stored(services)
    assert (row.value_text, row.flow_version, row.event_id) == ("no", "2", "twilio:SM2:0")
    assert row.answered_at.astimezone(UTC) == utc(25, 9)


def test_answers_either_side_of_local_midnight_are_separate_days(services, persist):
    # Dhaka is UTC+6: 17:59 UTC is 23:59 on the 24th there, 18:01 UTC is 00:01 on the 25th.
    add_workplace(services)
    persist(answer("long_hours", "yes", utc(24, 17, 59), "twilio:SM1:0"))
    persist(answer("long_hours", "no", utc(24, 18, 1), "twilio:SM2:0"))
    rows = stored(services)
    assert [(r.answered_on, r.value_text) for r in rows] == [
        (date(2026, 11, 24), "yes"),
        (date(2026, 11, 25), "no"),
    ]


def test_the_same_two_instants_are_one_day_in_a_utc_workplace(services, persist):
    add_workplace(services, slug="london-sew", code="5555", country="GB", timezone="UTC")
    persist(answer("long_hours", "yes", utc(24, 17, 59), "twilio:SM1:0", workplace="london-sew"))
    persist(answer("long_hours", "no", utc(24, 18, 1), "twilio:SM2:0", workplace="london-sew"))
    [row] = stored(services)
    assert (row.answered_on, row.value_text) == (date(2026, 11, 24), "no")


def test_each_answer_records_its_flow_version_channel_and_key(services, persist, key_id):
    add_workplace(services)
    persist(answer("fire_exits", "unsure", utc(25, 4), "at:ATX1:0", version="7"), channel="ussd")
    [row] = stored(services)
    assert (row.flow_id, row.flow_version, row.question_id) == ("checkin", "7", "fire_exits")
    assert (row.channel, row.key_id, row.pseudonym) == ("ussd", key_id, WHO)


def test_enrolment_then_language_change_then_opt_out(services, persist):
    add_workplace(services)
    enrolled = {
        "kind": "enrolled",
        "language": "bn",
        "workplace": "dhaka-knit",
        "at": utc(25, 3).isoformat(),
    }
    counts = persist(enrolled, answer("long_hours", "yes", utc(25, 3), "twilio:SM1:1"))
    assert counts == {"answers": 1, "profiles": 1, "forgotten": 0, "erased": 0, "consents": 0}
    row = profile(services)
    assert (row.language, row.consented_at.astimezone(UTC)) == ("bn", utc(25, 3))
    with services.db.session() as session:
        assert (
            row.workplace_id
            == session.execute(
                text("SELECT id FROM workplaces WHERE slug = 'dhaka-knit'")
            ).scalar_one()
        )

    persist({"kind": "language_changed", "language": "en"}, received=utc(25, 5))
    assert profile(services).language == "en"

    counts = persist({"kind": "opted_out"})
    assert counts["forgotten"] == 1
    assert profile(services) is None
    [kept] = stored(services)  # the anonymous answer stays
    assert (kept.pseudonym, kept.value_text) == (WHO, "yes")


def enrolment(at: datetime, language: str = "bn") -> dict:
    return {
        "kind": "enrolled",
        "language": language,
        "workplace": "dhaka-knit",
        "at": at.isoformat(),
    }


def test_a_retried_older_profile_change_does_not_undo_a_newer_one(services, persist):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), received=utc(25, 3))
    persist({"kind": "language_changed", "language": "en"}, received=utc(25, 5))
    persist({"kind": "language_changed", "language": "hi"}, received=utc(25, 4))  # a late retry
    persist(enrolment(utc(25, 3)), received=utc(25, 3))  # the enrolment job run again
    row = profile(services)
    assert (row.language, row.updated_at.astimezone(UTC)) == ("en", utc(25, 5))
    persist({"kind": "language_changed", "language": "hi"}, received=utc(25, 6))
    assert profile(services).language == "hi"


def test_an_enrolment_retried_after_stop_does_not_bring_the_worker_back(services, persist):
    add_workplace(services)
    # STOP arrived at 04:00: the web process ended the session and marked the worker forgotten
    services.sessions.commit(
        WHO, None, Reply("twilio", WHO, "SM-stop"), "", forgotten_at=utc(25, 4)
    )
    persist(enrolment(utc(25, 3)), received=utc(25, 3))  # the 03:00 enrolment job, retried late
    assert profile(services) is None
    persist(enrolment(utc(25, 5)), received=utc(25, 5))  # the worker joins again later
    assert profile(services).language == "bn"


def test_a_stop_retried_after_the_worker_joined_again_leaves_the_new_profile(services, persist):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), received=utc(25, 3))
    # STOP at 04:00 was handled at once; the worker joined again at 05:00
    persist(enrolment(utc(25, 5)), received=utc(25, 5))
    persist({"kind": "opted_out"}, received=utc(25, 4))  # the 04:00 STOP job, retried late
    assert profile(services) is not None and profile(services).language == "bn"
    persist({"kind": "opted_out"}, received=utc(25, 6))  # a STOP after it still forgets
    assert profile(services) is None


def test_opting_out_forgets_only_that_worker(services, persist):
    add_workplace(services)
    for who in (WHO, "b" * 64):
        persist(
            {
                "kind": "enrolled",
                "language": "bn",
                "workplace": "dhaka-knit",
                "at": utc(25, 3).isoformat(),
            },
            who=who,
        )
    persist({"kind": "opted_out"})
    assert profile(services) is None
    assert profile(services, "b" * 64) is not None


@pytest.mark.parametrize("workplace", ["no-such-place", None])
def test_an_answer_for_an_unknown_workplace_is_dropped_without_error(services, persist, workplace):
    add_workplace(services)
    counts = persist(
        answer("long_hours", "yes", utc(25, 3), "twilio:SM1:0", workplace=workplace),
        {
            "kind": "enrolled",
            "language": "bn",
            "workplace": "no-such-place",
            "at": utc(25, 3).isoformat(),
        },
    )
    assert counts == {"answers": 0, "profiles": 0, "forgotten": 0, "erased": 0, "consents": 0}
    assert stored(services) == []
    assert profile(services) is None


# -- event ids fit their column, whatever id the provider sends -------------------------------
EVENT_ID_SIZE = Answer.__table__.c.event_id.type.length  # String(100); SQLite does not enforce it


@dataclass(frozen=True)
class Answering:
    """A turn on any channel that reads the request as a message answering the question."""

    text: str
    unsupported: frozenset[str] = frozenset()

    def read(self, dialog, session) -> Turned:
        return Turned(Message(self.text))

    def render(self, step, dialog, texts) -> str:
        return sms.render(step.events)


def stored_event_ids(services) -> list[str]:
    return [row.event_id for row in stored(services)]


def test_answers_to_an_at_message_with_a_100_character_id_are_stored(app, client, services):
    """AT accepts ids of up to 100 characters: the answers they carry land in the database
    (an event id made of the whole id would not fit its column: PostgreSQL refuses it)."""
    add_workplace(services)
    phone = "+254711000123"
    for body in ("hello", "English", "I agree", "4321"):
        assert post_at_sms(client, at_sms_form(phone, body)).status_code == 200
    long_id = "ATXid_" + "f" * 94
    assert len(long_id) == 100
    for _ in range(2):  # AT's retry: the same id, recorded once
        assert post_at_sms(client, at_sms_form(phone, "1", msg_id=long_id)).status_code == 200
    run_jobs(app)
    [event_id] = stored_event_ids(services)
    assert len(event_id) <= EVENT_ID_SIZE
    assert long_id not in event_id and "f" * 40 not in event_id


@pytest.mark.parametrize(
    "provider,channel,dialog",
    [
        ("twilio", "sms", None),
        ("twilio", "whatsapp", None),
        ("twilio", "voice", "CA" + "1" * 32),
        ("at", "sms", None),
        ("at", "ussd", "ATUid_" + "2" * 60),
        ("at", "voice", "ATVId_" + "3" * 60),
    ],
)
def test_every_channels_event_ids_are_one_size(app, client, services, provider, channel, dialog):
    """However long the provider's id of a request (a USSD session id and the whole text it
    carries, a call id and its turn), its events' ids fit their column, differ from every other
    request's and are the same on a retry of that request."""
    add_workplace(services)
    phone = "+8801711000124"
    SmsWorker(client, phone).enrol()
    run_jobs(app)
    ids = ["x" * 2000, "x" * 2001, "y" * 100]
    with app.app_context():  # as in a request: the embedded queue runs jobs as they come
        for message_id in [*ids, ids[0]]:
            handle(services, Inbound(provider, channel, phone, message_id, dialog), Answering("1"))
    run_jobs(app)
    event_ids = stored_event_ids(services)
    assert len(event_ids) == len(ids)  # the retry of the first id added nothing
    assert len(set(event_ids)) == len(event_ids)
    for event_id in event_ids:
        assert len(event_id) <= EVENT_ID_SIZE and event_id.startswith(f"{provider}:")


# -- no phone number at rest ------------------------------------------------------------------
PHONE = "+8801711000099"


def _converse(client) -> None:
    worker = SmsWorker(client, PHONE)
    reply = worker.enrol()
    for _ in range(8):
        if FINISH in reply:
            return
        reply = worker.send("1")
    raise AssertionError(f"the check-in did not finish: {reply!r}")


def test_no_column_anywhere_holds_the_phone_number(app, client, services):
    add_workplace(services)
    _converse(client)
    run_jobs(app)
    database = dump_database(services)
    with services.db.session() as session:
        assert session.scalar(select(Worker)) is not None  # the scan was not of an empty store
        assert session.scalars(select(Answer)).all()
    for form in number_forms(PHONE):
        assert form not in database, f"the database holds the phone number as {form!r}"


def test_no_redis_value_holds_the_phone_number(app, client, services):
    add_workplace(services)
    _converse(client)
    run_jobs(app)
    stored_in_redis = dump_redis(services)
    assert stored_in_redis
    for form in number_forms(PHONE):
        assert form.encode() not in stored_in_redis, f"Redis holds the phone number as {form!r}"
