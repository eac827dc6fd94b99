"""The event log (gateway/persistence.py): hops append, drains write many requests at once,
idempotent however often an entry is written, nothing lost to a killed drain, an outage or a
bad entry, and never a drain job per message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from gateway import persistence
from gateway.persistence import ARMED_KEY, CONSUMER, EVENTS, GROUP, STREAM_KEY, Drainer, EventLog
from gateway.queues import PERSIST, Worker
from store import keyring
from store.models import Answer
from store.models import Worker as Profile

from .hops import database_down, retry_now, statements, work
from .support import SmsWorker, add_workplace

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.fixture
def key_id(services) -> int:
    with services.db.session() as session:
        return keyring.live_keys(session)[0].id


@pytest.fixture
def workplace(services) -> str:
    add_workplace(services)
    return "dhaka-knit"


def entry(key_id: int, who: str, n: int, value="yes", at: datetime = T0, **extra) -> dict:
    """One request's events: an answer to ``long_hours`` (and whatever ``extra`` adds)."""
    events = [
        {
            "kind": "answer_recorded",
            "flow": "checkin",
            "version": "1",
            "question": "long_hours",
            "value": value,
            "at": at.isoformat(),
            "workplace": "dhaka-knit",
            "event_id": f"twilio:{who}:{n}",
        }
    ]
    events += extra.get("more", [])
    return {
        "pseudonym": who,
        "key_id": key_id,
        "channel": "sms",
        "received_at": at.isoformat(),
        "events": events,
    }


def who(n: int) -> str:
    return f"{n:064x}"


def answers(services) -> list[tuple[str, str]]:
    with services.db.session() as session:
        rows = session.execute(
            select(Answer.pseudonym, Answer.value_text).order_by(Answer.pseudonym)
        )
        return [tuple(row) for row in rows]


def drain(app, slot: int = 0, patience: float = 5.0) -> dict:
    with app.app_context():
        return persistence.drain(slot, patience)


def test_thousands_of_requests_are_written_in_a_few_batches(app, services, workplace, key_id):
    for n in range(2500):
        services.events.append_for_tests(entry(key_id, who(n), n))
    with statements(services) as sent:
        drain(app)  # embedded: the second slot's drain, woken by the first full batch, runs inline
    inserts = [s for s in sent if s.lstrip().upper().startswith("INSERT INTO ANSWERS")]
    assert len(inserts) == 3, "one INSERT ... ON CONFLICT per batch"
    assert len(answers(services)) == 2500
    assert services.events.waiting() == 0


def test_a_later_answer_the_same_day_wins_within_a_batch_and_across_batches(
    app, services, workplace, key_id
):
    later = T0 + timedelta(hours=2)
    services.events.append_for_tests(entry(key_id, who(1), 1, "no", at=later))
    services.events.append_for_tests(entry(key_id, who(1), 2, "yes", at=T0))  # a late retry
    services.events.append_for_tests(entry(key_id, who(2), 3, "yes", at=T0))
    services.events.append_for_tests(entry(key_id, who(2), 4, "no", at=later))
    drain(app)
    services.events.append_for_tests(entry(key_id, who(1), 2, "yes", at=T0))  # once more, alone
    drain(app)
    assert answers(services) == [(who(1), "no"), (who(2), "no")]


def test_a_batch_written_twice_stores_nothing_twice(app, services, workplace, key_id):
    """A drain killed after its commit and before its acknowledgement: the entries are read
    again and written again, to the same rows."""
    for n in range(5):
        services.events.append_for_tests(entry(key_id, who(n), n))
    calls = []

    def write_then_die(entries):
        calls.append(len(entries))
        persistence._write(services, entries)
        raise SystemExit("killed between the commit and the acknowledgement")

    with app.app_context(), pytest.raises(SystemExit):
        Drainer(services.events, CONSUMER.format(0), write_then_die).run(0, 0.0)
    assert calls == [5] and services.events.waiting() == 5
    done = drain(app)  # the slot's next drain reads its unacknowledged entries first
    assert done["entries"] == 5
    assert len(answers(services)) == 5 and services.events.waiting() == 0


def test_another_slots_abandoned_entries_are_taken_over(
    app, services, workplace, key_id, monkeypatch
):
    for n in range(3):
        services.events.append_for_tests(entry(key_id, who(n), n))
    redis = services.redis
    redis.xgroup_create(STREAM_KEY, GROUP, id="0", mkstream=True)
    redis.xreadgroup(GROUP, CONSUMER.format(1), {STREAM_KEY: ">"})  # read by slot 1, then lost
    assert drain(app)["entries"] == 0  # not idle long enough: slot 1 may still be at work
    monkeypatch.setattr(persistence, "EVENTS", replace(persistence.EVENTS, claim_idle_ms=0))
    monkeypatch.delitem(services.__dict__, "events")  # made again with the patched stream
    assert drain(app)["entries"] == 3
    assert len(answers(services)) == 3


def test_one_bad_entry_is_set_aside_and_the_rest_are_written(app, services, workplace, key_id):
    services.events.append_for_tests(entry(key_id, who(1), 1))
    services.events.append_for_tests({"pseudonym": who(2), "events": [{"kind": "answer_recorded"}]})
    services.events.append_for_tests(entry(key_id, who(3), 3))
    done = drain(app)
    assert done["dead"] == 1 and done["answers"] == 2
    assert [p for p, _ in answers(services)] == [who(1), who(3)]
    assert services.events.waiting() == 0 and services.events.dead() == 1
    [(_, fields)] = services.redis.xrange(persistence.DEAD_KEY)
    assert fields[b"error"] == b"KeyError"


def test_an_outage_keeps_every_entry_and_a_successor_writes_them(
    app, services, workplace, key_id, queues
):
    for n in range(4):
        services.events.append_for_tests(entry(key_id, who(n), n))
    with database_down(services):
        done = drain(app, patience=0.3)
    assert done["entries"] == 0 and done["outages"] >= 2  # it kept trying meanwhile
    assert services.events.waiting() == 4
    assert services.redis.exists(ARMED_KEY.format(0)), "the successor holds the mark"
    assert len(ScheduledJobRegistry(queue=queues[PERSIST]).get_job_ids()) == 1
    assert retry_now(queues) == 1
    work(app, queues)
    assert len(answers(services)) == 4 and services.events.waiting() == 0
    assert not services.redis.exists(ARMED_KEY.format(0))


def test_a_full_batch_wakes_a_second_drain(app, services, workplace, key_id, queues):
    for n in range(persistence.BATCH + 10):
        services.events.append_for_tests(entry(key_id, who(n), n))
    services.redis.set(ARMED_KEY.format(0), b"1")
    drain(app)
    woken = [job.args for job in queues[PERSIST].get_jobs()]
    assert woken == [(1, persistence.PATIENCE_SECONDS)]
    assert len(answers(services)) == persistence.BATCH + 10


def test_an_entry_appended_as_the_drain_stops_is_not_stranded(app, services, workplace, key_id):
    """The drain found nothing, and a hop appends before the drain clears its mark: the hop
    saw the mark (and queued nothing), so the drain must find the entry itself."""
    services.redis.set(ARMED_KEY.format(0), b"1")
    events = services.events
    real_delete = services.redis.delete

    appended = []

    def delete_after_an_append(*keys):
        if ARMED_KEY.format(0) in keys and not appended:
            events.append_for_tests(entry(key_id, who(9), 9))
            appended.append(1)
        return real_delete(*keys)

    services.redis.delete = delete_after_an_append
    try:
        done = drain(app)
    finally:
        del services.redis.delete
    assert done["entries"] == 1 and answers(services) == [(who(9), "yes")]


def test_a_conversation_queues_one_drain_not_one_job_per_message(
    app, client, services, workplace, queues
):
    worker = SmsWorker(client, "+8801711000611")
    worker.enrol()
    for _ in range(3):
        worker.send("1")
    jobs = queues[PERSIST].get_jobs()
    assert [job.func_name for job in jobs] == ["gateway.persistence.drain"]
    assert services.events.waiting() >= 4
    work(app, queues)
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Answer)) == 3
        assert session.scalar(select(func.count()).select_from(Profile)) == 1


def test_maintenance_wakes_a_drain_for_entries_left_with_none_armed(
    app, services, workplace, key_id, queues
):
    """A drain killed outright: its mark expires, and any worker's next maintenance pass queues
    a new drain (no hop needed)."""
    services.events.append_for_tests(entry(key_id, who(1), 1))
    Worker([queues[PERSIST]], connection=services.redis).clean_registries()
    assert [job.func_name for job in queues[PERSIST].get_jobs()] == ["gateway.persistence.drain"]
    Worker([queues[PERSIST]], connection=services.redis).clean_registries()  # armed: no second
    assert len(queues[PERSIST].get_jobs()) == 1
    work(app, queues)
    assert len(answers(services)) == 1


def test_an_entry_holds_no_number(app, client, services, workplace, queues):
    phone = "+8801711000612"
    worker = SmsWorker(client, phone)
    worker.enrol()
    worker.send("1")
    raw = repr(services.redis.xrange(STREAM_KEY))
    assert phone[1:] not in raw and phone[-10:] not in raw
    assert services.identity.pseudonymise(phone).value in raw


def _lingering(services, monkeypatch, is_async: bool):
    """A drain of the event log as a worker (``is_async``) or the embedded default runs it,
    each batch's sizes recorded; hops append one entry during each of the first two writes and
    50 during each of the first two waits (the sleeps themselves are not slept)."""
    log = EventLog(services.redis, Queue(PERSIST, connection=services.redis, is_async=is_async))
    sizes: list[int] = []
    slept: list[float] = []

    def write(entries):
        sizes.append(len(entries))
        if len(sizes) <= 2:
            log.append_for_tests(entry(1, who(len(sizes)), len(sizes)))
        return {}

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) <= 2:
            for n in range(50):
                log.append_for_tests(entry(1, who(100 * len(slept) + n), n))

    monkeypatch.setattr(persistence.time, "sleep", sleep)
    log.append_for_tests(entry(1, who(0), 0))
    done = Drainer(log, CONSUMER.format(0), write).run(0, 30.0)
    return done, sizes, slept


def test_under_steady_load_a_drain_waits_for_its_batches_to_fill(services, monkeypatch):
    """A lone hop's entry is stored at once (no wait), and so is the next; once entries keep
    coming, a partial batch makes the drain wait LINGER_SECONDS before it reads again, and the
    entries that came meanwhile go in one batch."""
    done, sizes, slept = _lingering(services, monkeypatch, is_async=True)
    assert sizes == [1, 1, 51, 50] and done.entries == 103
    assert slept == [EVENTS.linger] * 3 and EVENTS.linger == persistence.LINGER_SECONDS > 0


def test_the_embedded_default_never_waits_in_a_drain(services, monkeypatch):
    """Inline, the drain runs in the hop's request: it never sleeps."""
    done, sizes, slept = _lingering(services, monkeypatch, is_async=False)
    assert sizes == [1, 1, 1] and done.entries == 3 and slept == []
