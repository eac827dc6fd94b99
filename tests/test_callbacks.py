"""The missed-call callback: which calls are callbacks, the once-an-hour limit, the per-process
cache of callback numbers, and the call_back job (SPEC §6: the worker's number travels only
sealed, and the callback number not at all: the job names the workplace)."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import event

from gateway import callbacks, directory_cache
from gateway.calls import CallError
from gateway.queues import CALLS
from gateway.queues import make as make_queues
from gateway.services import Services
from store import directory

from .channels.harness import FakeAfricasTalking, _capture_logs
from .leaks import find_number, redis_dump
from .support import add_workplace
from .test_calls import ACCOUNT_SID, AUTH_TOKEN, TWILIO_PATH, at_answer, twilio_error
from .test_outbound import assert_clean

WORKER = "+8801711283946"
OTHER_WORKER = "+8801819345678"
CALLBACK = "+8809612345678"  # the workplace's callback number (the service's own)
ELSEWHERE = "+14155550100"  # the service's ordinary voice number
VOICE_URL = "https://gateway.example.org/webhooks/twilio/voice"
NUMBERS = (WORKER, OTHER_WORKER, CALLBACK, ELSEWHERE)  # none of them is ever written down
NOTE = "call placed from the callback number of workplace dhaka-knit\n"


def numbers_in(*haystacks) -> list[str]:
    """Every form of every number of these tests found in the haystacks."""
    return [form for number in NUMBERS for form in find_number(number, *haystacks)]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logs(caplog):
    """Every log record at any level, raw (before the redaction filter sees it)."""
    caplog.set_level(logging.DEBUG)
    records: list[str] = []
    with _capture_logs(records):
        yield records


@pytest.fixture
def workplace(services) -> str:
    add_workplace(services)
    with services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number=CALLBACK)
    return "dhaka-knit"


@pytest.fixture
def queue(queues) -> Queue:
    """The callbacks' queue, its jobs waiting for a worker."""
    return queues[CALLS]


def scheduled(queue: Queue) -> list[Job]:
    registry = ScheduledJobRegistry(queue=queue)
    return [Job.fetch(job_id, connection=queue.connection) for job_id in registry.get_job_ids()]


def queued(queue: Queue) -> list[Job]:
    return scheduled(queue) + queue.get_jobs()


def missed(services, clock, caller=WORKER, called=CALLBACK, provider="twilio") -> bool:
    return callbacks.missed_call(services, provider, caller, called, clock=clock)


# -- which calls are callbacks --------------------------------------------------------------------


def test_a_call_to_a_callback_number_queues_one_sealed_callback(
    services, workplace, queue, clock, logs
):
    assert missed(services, clock) is True
    [job] = queued(queue)
    assert job.func is callbacks.call_back
    provider, sealed, place = job.args
    assert (provider, place) == ("twilio", workplace) and not job.kwargs
    assert services.crypto.unseal(sealed, callbacks.CALLEE_PURPOSE) == WORKER
    stored = services.redis.hgetall(job.key)
    assert not numbers_in(job.args, job.kwargs, job.description, job.meta, stored)
    assert not numbers_in(redis_dump(services.redis), logs)
    assert logs  # something was logged, and checked


def test_the_callback_waits_until_the_workers_phone_has_hung_up(services, workplace, queue, clock):
    before = datetime.now(UTC)
    missed(services, clock)
    [job_id] = ScheduledJobRegistry(queue=queue).get_job_ids()
    due = ScheduledJobRegistry(queue=queue).get_scheduled_time(job_id)
    delay = timedelta(seconds=callbacks.CALLBACK_DELAY_SECONDS)
    assert before + delay - timedelta(seconds=1) <= due <= datetime.now(UTC) + delay
    assert queue.get_jobs() == []  # not runnable before then


def test_without_a_delay_the_callback_is_queued_at_once(
    services, workplace, queue, clock, monkeypatch
):
    monkeypatch.setattr(callbacks, "CALLBACK_DELAY_SECONDS", 0)
    missed(services, clock)
    assert scheduled(queue) == [] and len(queue.get_jobs()) == 1


def test_a_second_missed_call_within_the_hour_queues_nothing(services, workplace, queue, clock):
    assert missed(services, clock) is True
    clock.now += 600
    assert missed(services, clock) is True  # still rejected: it must cost the worker nothing
    assert missed(services, clock, provider="at") is True  # whichever provider they rang
    assert len(queued(queue)) == 1
    [key] = services.redis.keys("wv:callback:*")
    assert key.decode() == callbacks.ONCE_KEY.format(services.identity.pseudonymise(WORKER).value)
    assert 3590 <= services.redis.ttl(key) <= callbacks.ONCE_PER_SECONDS


def test_after_the_hour_the_worker_is_called_back_again(services, workplace, queue, clock):
    missed(services, clock)
    for key in services.redis.keys("wv:callback:*"):  # what Redis does when the hour is up
        services.redis.delete(key)
    missed(services, clock)
    assert len(queued(queue)) == 2


def test_each_worker_has_their_own_hour(services, workplace, queue, clock):
    assert missed(services, clock, WORKER) and missed(services, clock, OTHER_WORKER)
    callees = sorted(
        services.crypto.unseal(j.args[1], callbacks.CALLEE_PURPOSE) for j in queued(queue)
    )
    assert callees == sorted([WORKER, OTHER_WORKER])


@pytest.mark.parametrize("called", [ELSEWHERE, "+8809612345679", "client:alice", "", "anonymous"])
def test_a_call_to_another_number_is_no_callback(services, workplace, queue, clock, called):
    assert missed(services, clock, called=called) is False
    assert queued(queue) == []
    assert services.redis.keys("wv:callback:*") == []


@pytest.mark.parametrize("called", ["8809612345678", "tel:+8809612345678", " +8809612345678 "])
def test_the_callback_number_is_recognised_in_any_form_a_provider_sends(
    services, workplace, queue, clock, called
):
    assert missed(services, clock, called=called) is True
    assert len(queued(queue)) == 1


@pytest.mark.parametrize("caller", ["anonymous", "", "client:alice", "12"])
def test_a_withheld_caller_is_rejected_but_not_called_back(
    services, workplace, queue, clock, caller
):
    assert missed(services, clock, caller=caller) is True
    assert queued(queue) == []
    assert services.redis.keys("wv:callback:*") == []


def test_an_unknown_provider_is_a_programming_error(services, workplace, clock):
    with pytest.raises(ValueError):
        missed(services, clock, provider="sms")


def test_a_failure_to_queue_leaves_the_hour_free(
    services, workplace, queues, queue, clock, monkeypatch
):
    def broken(*args, **kwargs):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(queue, "enqueue_in", broken)
    with pytest.raises(ConnectionError):
        missed(services, clock)
    assert services.redis.keys("wv:callback:*") == []
    monkeypatch.undo()
    monkeypatch.setitem(services.__dict__, "queues", queues)
    assert missed(services, clock) is True
    assert len(queued(queue)) == 1


# -- the cache of callback numbers ----------------------------------------------------------------


def count_sql(services) -> list[str]:
    statements: list[str] = []
    event.listen(
        services.db.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    return statements


def test_a_hop_does_no_sql(services, workplace, queue, clock):
    statements = count_sql(services)
    assert missed(services, clock, called=ELSEWHERE) is False  # reads the directory from Redis
    assert missed(services, clock) is True  # and the key ring
    clock.now += directory_cache.CACHE_SECONDS - 0.5
    assert missed(services, clock, called=ELSEWHERE) is False
    assert missed(services, clock, OTHER_WORKER) is True
    clock.now += 1.0  # the copy in memory is now too old: read from Redis again, not the database
    assert missed(services, clock, called=ELSEWHERE) is False
    assert statements == []


def test_a_new_callback_number_works_within_five_seconds(services, queue, clock, migrated):
    """At once in the process that set it, within five seconds in every other one."""
    elsewhere = Services(migrated)  # another process: the same database and Redis
    add_workplace(services)
    assert missed(services, clock) is False  # no callback number yet
    assert not callbacks.is_callback_number(elsewhere, CALLBACK, clock)  # (and that is cached)
    with services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number=CALLBACK)
    assert callbacks.is_callback_number(services, CALLBACK, clock)
    clock.now += 4.9
    assert not callbacks.is_callback_number(elsewhere, CALLBACK, clock)  # its copy still
    clock.now += 0.1
    assert callbacks.is_callback_number(elsewhere, CALLBACK, clock)
    assert missed(services, clock) is True
    assert len(queued(queue)) == 1
    elsewhere.db.dispose()


def test_a_removed_callback_number_stops_within_five_seconds(services, workplace, queue, clock):
    assert missed(services, clock) is True
    with services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number="")
    clock.now += directory_cache.CACHE_SECONDS
    assert missed(services, clock, OTHER_WORKER) is False


def test_each_redis_has_its_own_numbers(services, workplace, clock, migrated):
    """The numbers live in Redis: services on another Redis (even on the same database) see
    those of their own, until it is rebuilt from the database."""
    assert callbacks.is_callback_number(services, CALLBACK, clock)
    other = Services(migrated)
    other.redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        assert not callbacks.is_callback_number(other, CALLBACK, clock)
        other.mirror.rebuild()
        clock.now += directory_cache.CACHE_SECONDS
        assert callbacks.is_callback_number(other, CALLBACK, clock)
    finally:
        other.db.dispose()


# -- the call_back job ----------------------------------------------------------------------------


@pytest.fixture
def fake_twilio():
    from .test_calls import twilio_answer

    fake = FakeAfricasTalking(answer=twilio_answer())
    yield fake
    fake.close()


@pytest.fixture
def twilio_services(services, fake_twilio, workplace, monkeypatch):
    """The app's services, with the workplace, and Twilio REST credentials pointing at the
    fake."""
    config = dataclasses.replace(
        services.config,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_url=fake_twilio.url,
    )
    monkeypatch.setattr(services, "config", config)
    return services


def sealed_worker(services, ttl: int = 60, now: float | None = None) -> str:
    return services.crypto.seal(WORKER, callbacks.CALLEE_PURPOSE, ttl, now=now)


def test_call_back_rings_the_worker_into_the_voice_flow(app, twilio_services, fake_twilio):
    with app.app_context():
        call_id = callbacks.call_back("twilio", sealed_worker(twilio_services), "dhaka-knit")
    assert call_id == "CA" + "0f" * 16
    [request] = fake_twilio.requests
    assert request["path"] == TWILIO_PATH
    assert request["form"] == {"To": WORKER, "From": CALLBACK, "Url": VOICE_URL, "Method": "POST"}


def test_call_back_through_africas_talking(app, services, workplace, monkeypatch):
    fake = FakeAfricasTalking(answer=at_answer(session_id="ATVId_cb"))
    try:
        config = dataclasses.replace(
            services.config, at_username="workervoice", at_api_key="k", at_api_url=fake.url
        )
        monkeypatch.setattr(services, "config", config)
        with app.app_context():
            assert callbacks.call_back("at", sealed_worker(services), workplace) == "ATVId_cb"
        [request] = fake.requests
        assert (request["path"], request["form"]["to"], request["form"]["from"]) == (
            "/call",
            WORKER,
            CALLBACK,
        )
    finally:
        fake.close()


def test_call_back_rings_from_the_callback_number_the_workplace_has_when_it_runs(
    app, twilio_services, fake_twilio
):
    with twilio_services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number=ELSEWHERE)
    with app.app_context():
        assert callbacks.call_back("twilio", sealed_worker(twilio_services), "dhaka-knit")
    [request] = fake_twilio.requests
    assert (request["form"]["To"], request["form"]["From"]) == (WORKER, ELSEWHERE)


@pytest.mark.parametrize("place", ["dhaka-knit", "gone-mill"])
def test_call_back_for_a_workplace_without_a_callback_number_calls_no_one(
    app, twilio_services, fake_twilio, logs, place
):
    """The number was cleared (or the workplace is not there) between the missed call and the
    job: there is no number to call from, and no retry brings one."""
    with twilio_services.db.session() as session:
        directory.set_workplace(session, "dhaka-knit", callback_number="")
    with app.app_context():
        assert callbacks.call_back("twilio", sealed_worker(twilio_services), place) is None
    assert fake_twilio.requests == []
    assert any("no callback number" in record for record in logs)
    assert not numbers_in(logs)


def test_call_back_without_credentials_writes_a_note_without_any_number(
    app, services, workplace, monkeypatch, tmp_path
):
    config = dataclasses.replace(services.config, twilio_account_sid=None, instance_dir=tmp_path)
    monkeypatch.setattr(services, "config", config)
    with app.app_context():
        name = callbacks.call_back("twilio", sealed_worker(services), workplace)
    note = services.config.instance_dir / "outbox" / name
    assert note.read_text(encoding="utf-8") == NOTE
    assert not numbers_in(name, note.read_bytes())


def test_call_back_with_an_expired_seal_calls_no_one(app, twilio_services, fake_twilio, logs):
    sealed = sealed_worker(twilio_services, 60, now=time.time() - 120)
    with app.app_context():
        assert callbacks.call_back("twilio", sealed, "dhaka-knit") is None
    assert fake_twilio.requests == []
    assert any("expired" in record for record in logs)


@pytest.mark.parametrize("purpose", ["job-recipient", "something-else"])
def test_call_back_with_a_seal_for_another_purpose_calls_no_one(
    app, twilio_services, fake_twilio, purpose
):
    sealed = twilio_services.crypto.seal(WORKER, purpose, 60)
    with app.app_context():
        assert callbacks.call_back("twilio", sealed, "dhaka-knit") is None
    assert fake_twilio.requests == []


def test_call_back_refused_for_good_is_dropped_quietly(app, twilio_services, fake_twilio, logs):
    fake_twilio.answer = twilio_error(400, 21211, f"The 'To' number {WORKER} is not valid.")
    with app.app_context():
        assert callbacks.call_back("twilio", sealed_worker(twilio_services), "dhaka-knit") is None
    assert any("21211" in record for record in logs)
    assert not find_number(WORKER, logs)


def test_call_back_failure_is_raised_without_the_number(app, twilio_services, fake_twilio, logs):
    fake_twilio.answer = twilio_error(500, 20500, f"Internal error calling {WORKER}")
    with app.app_context(), pytest.raises(CallError) as caught:
        callbacks.call_back("twilio", sealed_worker(twilio_services), "dhaka-knit")
    chain = [caught.value, caught.value.__context__, caught.value.__cause__]
    assert not numbers_in([repr(e) for e in chain])
    assert not find_number(WORKER, logs)
    assert_clean(caught.value)  # and not the shared test number either


def test_a_failed_callback_is_retried_and_stored_without_any_number(
    app, twilio_services, fake_twilio, queue, clock, monkeypatch, logs
):
    """From the missed call to a failing job in a real worker: RQ keeps the failure (and its
    traceback) and schedules the retry; none of it holds a number."""
    monkeypatch.setattr(callbacks, "CALLBACK_DELAY_SECONDS", 0)
    fake_twilio.answer = twilio_error(503, 20503, f"Service unavailable calling {WORKER}")
    assert missed(twilio_services, clock) is True
    with app.app_context():
        SimpleWorker([queue], connection=twilio_services.redis).work(burst=True)
    assert len(fake_twilio.requests) == 1  # tried, failed, and retried later (SEND_RETRY)
    [job] = scheduled(queue)
    assert job.retries_left == callbacks.SEND_RETRY.max - 1
    assert not numbers_in(redis_dump(twilio_services.redis))
    assert not find_number(WORKER, logs)


def test_a_refused_callback_is_not_retried(
    app, twilio_services, fake_twilio, queue, clock, monkeypatch
):
    monkeypatch.setattr(callbacks, "CALLBACK_DELAY_SECONDS", 0)
    fake_twilio.answer = twilio_error(400, 21216, f"Account not allowed to call {WORKER}")
    missed(twilio_services, clock)
    with app.app_context():
        SimpleWorker([queue], connection=twilio_services.redis).work(burst=True)
    assert len(fake_twilio.requests) == 1
    assert scheduled(queue) == [] and FailedJobRegistry(queue=queue).get_job_ids() == []
    assert not numbers_in(redis_dump(twilio_services.redis))


def test_the_embedded_default_calls_back_at_once(
    app, services, workplace, clock, monkeypatch, tmp_path
):
    """No REDIS_URL: no worker and no scheduler, so the job runs as it is queued."""
    monkeypatch.setitem(services.__dict__, "queues", make_queues(services.redis, is_async=False))
    config = dataclasses.replace(services.config, twilio_account_sid=None, instance_dir=tmp_path)
    monkeypatch.setattr(services, "config", config)
    with app.test_request_context():
        assert missed(services, clock) is True
    [note] = (services.config.instance_dir / "outbox").glob("call-*.txt")
    assert note.read_text(encoding="utf-8") == NOTE
    assert not numbers_in(note.name, note.read_bytes(), redis_dump(services.redis))
